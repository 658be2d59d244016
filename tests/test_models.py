"""Model descriptions: the built-in model from its config and by tracing agree; users' models are
described by tracing (block outputs, channels, geometry); loading a factory with safetensors
weights; every bad argument is one clear line and status 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from introspeech.asr.model import build_model, geometry
from introspeech.cli import app
from introspeech.errors import InputError
from introspeech.models.description import Output, describe
from introspeech.models.loading import load_description, load_weights, parse_alphabet
from introspeech.profiles import results as R
from introspeech.profiles.engine import profile_corpus
from introspeech.profiles.settings import ProfileSettings

from .profiles_toy import FEATURES, expected_nap, planted_corpus, planted_model

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_builtin_model_traced_equals_its_config():
    model = build_model("tiny").eval()
    by_config = describe(model)
    by_trace = describe(model, example=torch.zeros(1, 40, 120))
    assert [layer.name for layer in by_config.layers] == model.config.layer_names
    assert [layer.path for layer in by_trace.layers] == [f"layers.{n}" for n in model.config.layer_names]
    geo = geometry(model.config)
    for a, b, name in zip(by_config.layers, by_trace.layers, model.config.layer_names):
        assert a.geometry == b.geometry == geo[name] and a.channels == b.channels


def test_quartznet_blocks_and_receptive_fields():
    sys.path.insert(0, str(ROOT))
    from examples.quartznet import quartznet

    d = describe(quartznet("micro").eval())
    assert [layer.path for layer in d.layers] == ["prologue", "blocks.0", "blocks.1", "epilogue.3", "epilogue.6", "output"]
    # micro: C1 k5 s2; blocks k5, k7 with R=2 depthwise convs; C2 k5 dilation 2
    assert [layer.geometry.rf for layer in d.layers] == [5, 5 + 2 * 2 * 4, 21 + 2 * 2 * 6, 45 + 2 * 4 * 2, 61, 61]
    assert all(layer.geometry.stride == 2 for layer in d.layers)


class Foreign(nn.Module):
    """The planted recognizer's layers under other names, with a residual branch that adds zero."""

    def __init__(self, planted: nn.Module):
        super().__init__()
        self.body = planted.layers.layer1
        self.zero = nn.Conv1d(planted.config.n_mels, planted.config.layers[0].channels, 1, bias=False)
        nn.init.zeros_(self.zero.weight)
        self.head = planted.layers.output

    def forward(self, x):
        return self.head(self.body(x) + self.zero(x))


def test_profiles_of_a_foreign_model_equal_the_planted_values(tmp_path):
    """A user's class (other attribute names, a residual add) profiled through its description."""
    planted = planted_model()
    utts = planted_corpus(tmp_path)
    settings = ProfileSettings(relevance="", letters_from="prediction", nap_window=3, pattern_window=4)
    ours = profile_corpus(planted, FEATURES, utts, settings)
    desc = describe(Foreign(planted).eval(), features=FEATURES, layers=["body", "head"])
    theirs = profile_corpus(desc, FEATURES, utts, settings)
    assert theirs.layout.layers == ("body", "head") and theirs.layout.geometry == ours.layout.geometry
    for key, value in ours.arrays.items():
        other = key.replace("/layer1/", "/body/").replace("/output/", "/head/")
        np.testing.assert_array_equal(theirs.arrays[other], value, err_msg=key)
    nap = R.naps(theirs, "body", "phonemes")
    from introspeech.profiles.labels import GROUPS

    from .profiles_toy import PHONES
    g = GROUPS["phonemes"].index(PHONES[0])
    np.testing.assert_allclose(nap[g], expected_nap(0), atol=1e-6)


OTHER_ALPHABET = ("<b>",) + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("|", "'")
"""Blank first, upper case, ``|`` between words (wav2vec 2.0's convention)."""


class OtherAlphabet(nn.Module):
    """The planted recognizer with its outputs reordered to `OTHER_ALPHABET`."""

    def __init__(self, planted: nn.Module):
        super().__init__()
        self.inner = Foreign(planted)
        self.register_buffer("order", torch.tensor([28] + list(range(28))))  # new index j reads old index order[j]

    def forward(self, x):
        return self.inner(x)[:, self.order]


@pytest.mark.parametrize("letters_from", ["reference", "prediction"])
def test_letters_in_the_models_own_alphabet_equal_the_builtin_ones(tmp_path, letters_from):
    planted = planted_model()
    utts = planted_corpus(tmp_path)
    settings = ProfileSettings(relevance="gradient", letters_from=letters_from, nap_window=2, pattern_window=3)
    ours = profile_corpus(describe(Foreign(planted).eval(), features=FEATURES, layers=["body", "head"]), FEATURES,
                          utts, settings)
    desc = describe(OtherAlphabet(planted).eval(), features=FEATURES, layers=["inner.body", "inner.head"])
    desc.output = Output("ctc", OTHER_ALPHABET, 0)
    theirs = profile_corpus(desc, FEATURES, utts, settings, strict=True)
    assert theirs.layout.groups("letters") == OTHER_ALPHABET[1:] and theirs.layout.blank == 0
    assert theirs.arrays["nap/inner.body/letters/count"].sum() > 0
    for key, value in ours.arrays.items():
        other = key.replace("/body/", "/inner.body/")
        if "/head/" in key:  # the output layer's channels are the reordered scores
            continue
        np.testing.assert_array_equal(theirs.arrays[other], value, err_msg=key)
    saved = R.load(R.save(theirs, tmp_path / "saved"))
    assert saved.layout.groups("letters") == OTHER_ALPHABET[1:] and saved.layout.blank == 0


def test_an_alphabet_encodes_and_decodes_transcripts():
    out = Output("ctc", OTHER_ALPHABET, 0)
    assert out.encode("it's a") == [9, 20, 28, 19, 27, 1]
    assert out.decode([0, 9, 9, 0, 20, 20, 27, 0, 1, 0]) == "it a"
    no_apostrophe = Output("ctc", OTHER_ALPHABET[:-1], 0)
    assert no_apostrophe.encode("it's") == [9, 20, 19]  # left out, as such a model never emits it
    with pytest.raises(ValueError, match="'z' of the transcript is not in the model's alphabet"):
        Output("ctc", ("_", "a", "b", " "), 0).encode("a z")


def test_factory_with_safetensors_weights_round_trip(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    from examples.quartznet import quartznet

    torch.manual_seed(3)
    net = quartznet("tiny")
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.chdir(ROOT)
    desc = load_description(factory="examples.quartznet:quartznet", weights=tmp_path / "w.safetensors")
    for k, v in net.state_dict().items():
        assert torch.equal(desc.module.state_dict()[k], v)
    assert not desc.module.training


def _micro():
    sys.path.insert(0, str(ROOT))
    from examples.quartznet import quartznet

    return quartznet("micro")


def test_weights_that_do_not_fit_are_named(tmp_path):
    net = _micro()
    state = net.state_dict()
    save_file({k: v for k, v in state.items() if "output" not in k}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(InputError, match=r"missing \['output.bias', 'output.weight'\]"):
        load_weights(net, tmp_path / "missing.safetensors")
    bad = dict(state)
    bad["output.weight"] = torch.zeros(3, 32, 1)
    save_file(bad, str(tmp_path / "shape.safetensors"))
    with pytest.raises(InputError, match=r"output.weight is \(3, 32, 1\) in the file"):
        load_weights(net, tmp_path / "shape.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "shape.safetensors").read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_weights(net, tmp_path / "cut.safetensors")


def test_alphabet_option():
    assert parse_alphabet(None).blank == 28
    out = parse_alphabet('["a", "b", "<b>", "c"]')
    assert out.alphabet == ("a", "b", "<b>", "c") and out.blank == 2 and out.letters == ("a", "b", "c")
    assert parse_alphabet("xyz").alphabet == ("x", "y", "z", "<b>")
    with pytest.raises(InputError, match="--alphabet"):
        parse_alphabet('["a", "a"]')


@pytest.mark.parametrize("args,message", [
    (["--model-factory", "nowhere"], "is not MODULE:FUNCTION"),
    (["--model-factory", "examples.nothing:f"], "cannot import 'examples.nothing'"),
    (["--model-factory", "examples.quartznet:missing"], "has no function 'missing'"),
    (["--model-factory", "examples.quartznet:PRESETS"], "has no function 'PRESETS'"),
    (["--model-factory", "examples.quartznet:quartznet", "--weights", "w.pt"], "pickles are refused"),
    (["--model-factory", "examples.quartznet:quartznet", "--alphabet", "ab"], "its alphabet has 3 symbols"),
    (["--weights", "w.safetensors"], "--weights: only with --model-factory"),
    (["--model-factory", "examples.quartznet:quartznet", "--features", "{bad"], "--features: neither a preset"),
])
def test_bad_model_arguments_give_one_line_and_status_2(args, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    res = runner.invoke(app, ["layers", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2


def test_layers_command_lists_paths_and_receptive_fields(monkeypatch):
    monkeypatch.chdir(ROOT)
    res = runner.invoke(app, ["layers", "--model-factory", "examples.quartznet:quartznet", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["layers"]
    assert rows[0] == {"name": "prologue", "path": "prologue", "channels": 64, "rf": 11, "stride": 2, "offset": -5,
                       "time_axis": -1, "local": True}
    assert rows[-1]["rf"] == 211


def test_sanity_checks_on_a_users_model(tmp_path, monkeypatch):
    """Speech examples cut to the traced receptive field, Grad-CAM's default layer, and the
    permuted-transcript twin retrained through the factory."""
    from introspeech.corpus.load import load_corpus
    from introspeech.sanity.run import run_sanity

    monkeypatch.chdir(ROOT)
    desc = load_description(factory="examples.quartznet:micro")
    utts = load_corpus(None)["test"][:12]
    results, summary = run_sanity(desc, desc.features, utts, ["gradient", "lrp_epsilon", "grad_cam"], tmp_path,
                                  examples=1, random_label_steps=2, image=False, independent=False)
    assert set(summary["verdicts"]["speech"]) == {"gradient", "lrp_epsilon", "grad_cam"}
    assert (tmp_path / "random_labels" / "last.safetensors").is_file()
    assert [c["layer"] for c in results["speech"]["gradient"]["cascading"]][0] == "output"


def test_featvis_on_a_users_model(tmp_path, monkeypatch):
    """Letters and a channel of a block named by its module path, on the traced receptive field."""
    monkeypatch.chdir(ROOT)
    res = runner.invoke(app, ["featvis", "--model-factory", "examples.quartznet:micro", "--objective", "letter:s",
                              "--objective", "channel:blocks.1:3", "--params", "direct", "--steps", "4",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["frames"] == 61  # the micro QuartzNet's receptive field
    assert np.load(tmp_path / "channel_blocks_1_3_direct.npy").shape == (40, 61)


@pytest.mark.parametrize("factory", ["examples.quartznet:micro", "examples.wav2letter:micro"])
def test_the_whole_report_on_a_users_model(tmp_path, monkeypatch, factory):
    """demo --model-factory: recognizer, attribution (all frames), patterns, NAPs, featvis and sanity
    sections for a residual QuartzNet and an unpadded Wav2Letter layout (random weights)."""
    monkeypatch.chdir(ROOT)
    res = runner.invoke(app, ["demo", "--model-factory", factory, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "index.html").read_text()
    for title in ("Speech recognizer", "Local introspection", "Letter patterns", "Neuron activation profiles",
                  "Feature visualization", "Sanity checks"):
        assert f"<h2>{title}</h2>" in html
    summary = json.loads((tmp_path / "profiles" / "summary.json").read_text())
    first = "prologue" if "quartznet" in factory else "acoustic_model.1"
    assert list(summary["layers"])[0] == first
    assert json.loads((tmp_path / "sanity" / "summary.json").read_text())["verdicts"]["speech"]


def test_a_users_model_gives_the_same_bits_on_every_engine_and_after_resume(tmp_path, monkeypatch):
    """Real audio, a QuartzNet from its factory: in process, on Dask workers, and killed after one
    shard and resumed, the sums are bit-identical."""
    pytest.importorskip("dask.distributed")
    from introspeech.corpus.load import load_corpus

    monkeypatch.chdir(ROOT)
    desc = load_description(factory="examples.quartznet:micro")
    utts = load_corpus(None)["test"][:6]
    settings = ProfileSettings(relevance="gradient", nap_window=2, pattern_window=4)
    local = profile_corpus(desc, desc.features, utts, settings, shard_size=2)
    dask = profile_corpus(desc, desc.features, utts, settings, shard_size=2, engine="dask", workers=2)
    profile_corpus(desc, desc.features, utts, settings, shard_size=2, state_dir=tmp_path, max_shards=1)
    resumed = profile_corpus(desc, desc.features, utts, settings, shard_size=2, state_dir=tmp_path, resume=True)
    for other in (dask, resumed):
        assert other.arrays.keys() == local.arrays.keys()
        for k in local.arrays:
            np.testing.assert_array_equal(other.arrays[k], local.arrays[k], err_msg=k)


def test_describing_a_model_leaves_its_modes_as_they_were():
    net = _micro().train()
    net.blocks[0].eval()  # a mixed state must come back exactly
    modes = [(n, m.training) for n, m in net.named_modules()]
    describe(net)
    assert [(n, m.training) for n, m in net.named_modules()] == modes


def test_transcripts_in_the_models_own_alphabet_equal_the_builtin_ones(tmp_path):
    from introspeech.asr.evaluate import evaluate_split

    planted = planted_model()
    utts = planted_corpus(tmp_path)
    ours, rows = evaluate_split(Foreign(planted).eval(), FEATURES, utts)
    theirs, their_rows = evaluate_split(OtherAlphabet(planted).eval(), FEATURES, utts,
                                        decode=Output("ctc", OTHER_ALPHABET, 0).decode)
    assert [r["hypothesis"] for r in their_rows] == [" ".join(r["hypothesis"].split()) for r in rows]
    assert theirs["utterances"] == ours["utterances"] == len(utts) and rows[0]["hypothesis"]


def test_weights_fingerprint_tells_weights_apart_and_copies_alike():
    """The identity a resumed run checks: every parameter and buffer counts (0-dim ones and other
    dtypes included), a copy has the same, and reading it changes nothing."""
    import copy

    from introspeech.models.identity import weights_fingerprint

    net = torch.nn.Sequential(torch.nn.Conv1d(3, 4, 3), torch.nn.BatchNorm1d(4)).to(torch.bfloat16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    same = weights_fingerprint(copy.deepcopy(net))
    assert weights_fingerprint(net) == same
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    for name in ("0.weight", "1.running_var", "1.num_batches_tracked"):
        other = copy.deepcopy(net)
        with torch.no_grad():
            other.state_dict()[name].view(-1)[0] += 1
        assert weights_fingerprint(other) != same, name
