"""LRP through attention models: AttnLRP and CP-LRP against an independent reference, per-operation
rules against their equations, conservation of CP-LRP, errors that name what is not supported."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from introspeech.attribution import Scores, attribute
from introspeech.attribution.frames import attribute_frames
from introspeech.attribution.op_rules import AddConstant, Bilinear, Softmax, Uniform

from .attention_nets import (
    ConformerCTC,
    WhisperishEncoder,
    conformer_forward,
    randomize,
    reference,
    whisperish_forward,
)
from .nets import assert_same_state, model_state

MODELS = {
    "conformer": (lambda: ConformerCTC(), conformer_forward),
    "whisper-explicit": (lambda: WhisperishEncoder(explicit=True), whisperish_forward),
    "whisper-sdpa": (lambda: WhisperishEncoder(explicit=False), whisperish_forward),
}


def _selector(out: torch.Tensor, seed: int) -> torch.Tensor:
    """One score per row, a different one in each row."""
    g = torch.Generator().manual_seed(seed)
    sel = torch.zeros(out.shape, dtype=out.dtype)
    for b in range(out.shape[0]):
        sel[b].view(-1)[int(torch.randint(out[b].numel(), (1,), generator=g))] = 1
    return sel


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("name", list(MODELS))
def test_lrp_through_attention_equals_the_reference(name, variant):
    build, forward = MODELS[name]
    model = randomize(build(), seed=3)
    x = torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    state = model_state(model)
    with torch.no_grad():
        out = model(x)
    for seed in range(2):
        sel = _selector(out, seed)
        want = reference(forward, model, x, sel, cp=variant == "cp")
        got = attribute(model, x, sel * out, "lrp", epsilon=1e-12, attention=variant)
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
        assert float(want.abs().max()) > 1e-3  # a map, not zeros
    assert_same_state(state, model_state(model))


@pytest.mark.parametrize("name", list(MODELS))
def test_cp_lrp_conserves_in_a_bias_free_network_and_attnlrp_does_not(name):
    build, _ = MODELS[name]
    model = randomize(build(), seed=4, bias_free=True)
    if isinstance(model, WhisperishEncoder):
        with torch.no_grad():
            model.positions.zero_()  # added positions absorb relevance as a bias would
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    sel = _selector(out, 0)
    maps, delta = attribute(model, x, sel * out, "lrp", epsilon=1e-12, attention="cp", return_convergence_delta=True)
    torch.testing.assert_close(maps.flatten(1).sum(1), (sel * out).flatten(1).sum(1), atol=1e-8, rtol=1e-8)
    assert float(delta.abs().max()) < 1e-8
    _, delta_attn = attribute(model, x, sel * out, "lrp", epsilon=1e-12, return_convergence_delta=True)
    assert float(delta_attn.abs().max()) > 1e-6  # the softmax rule is not conservative


def _stab(z, eps):
    return z + eps * (1.0 if z >= 0 else -1.0)


def test_bilinear_rule_equals_explicit_contributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    r = torch.randn(3, 2, generator=g, dtype=torch.float64)
    scale, eps = 0.7, 1e-3
    z = scale * a @ b
    for sa, sb in ((0.5, 0.5), (0.0, 1.0)):
        ra, rb = torch.zeros_like(a), torch.zeros_like(b)
        for i in range(3):
            for j in range(2):
                for k in range(4):
                    share = scale * a[i, k] * b[k, j] / _stab(float(z[i, j]), eps) * r[i, j]
                    ra[i, k] += sa * share
                    rb[k, j] += sb * share
        got = Bilinear(sa, sb, scale, eps).relevance([a, b], z, r)
        torch.testing.assert_close(got[1], rb)
        if sa:
            torch.testing.assert_close(got[0], ra)
        else:
            assert got[0] is None


def test_softmax_uniform_and_constant_rules_equal_their_equations():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, generator=g, dtype=torch.float64)
    x[1, 3] = -math.inf  # a masked logit receives nothing
    s = torch.softmax(x, -1)
    r = torch.randn(2, 5, generator=g, dtype=torch.float64)
    (got,) = Softmax(-1).relevance([x], s, r)
    for row in range(2):
        for i in range(5):
            want = 0.0 if s[row, i] == 0 else float(x[row, i] * (r[row, i] - s[row, i] * r[row].sum()))
            assert abs(float(got[row, i]) - want) < 1e-12
    a, b = torch.randn(2, 3, 4, generator=g), torch.randn(2, 1, 4, generator=g)
    ra, rb = Uniform().relevance([a, b], a * b, torch.ones(2, 3, 4))
    torch.testing.assert_close(ra, torch.full_like(a, 0.5))
    torch.testing.assert_close(rb, torch.full_like(b, 1.5))  # broadcast over 3 rows: the shares add up
    c = torch.tensor([0.0, 2.0, -math.inf], dtype=torch.float64)
    v = torch.tensor([1.0, -1.0, 3.0], dtype=torch.float64)
    (rv,) = AddConstant(1e-9).relevance([v], v + c, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(rv, torch.tensor([1.0, -1.0 / (1.0 - 1e-9), 0.0], dtype=torch.float64))


def test_unsupported_attention_forms_are_errors_that_name_them():
    mha = nn.MultiheadAttention(4, 2, add_bias_kv=True, batch_first=True).double().eval()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    state = model_state(Net())
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn is not supported"):
        attribute(Net(), x, torch.ones(1, 3, 4, dtype=torch.float64), "lrp")
    assert_same_state(state, model_state(Net()))

    class Exp(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            h = self.lin(x)
            return torch.softmax(h, -1) @ torch.exp(h)
    with pytest.raises(ValueError, match="operation 'exp' between modules is not supported by lrp"):
        attribute(Exp().double(), torch.randn(1, 4, 4, dtype=torch.float64), torch.ones(1, 4, 4, dtype=torch.float64),
                  "lrp")
    with pytest.raises(ValueError, match="attention must be one of"):
        attribute(Exp().double(), torch.randn(1, 4, 4, dtype=torch.float64), torch.ones(1, 4, 4, dtype=torch.float64),
                  "lrp", attention="magic")


class TinySeq2Seq(nn.Module):
    """An encoder of features and a decoder over tokens with cross-attention: (mel, tokens) →
    (B, tokens, vocab) logits, as Whisper's."""

    def __init__(self, n_mels: int = 6, d: int = 8, vocab: int = 7):
        super().__init__()
        self.encoder = WhisperishEncoder(n_mels, d, classes=d, layers=1)
        self.embed = nn.Embedding(vocab, d)
        self.cross = nn.MultiheadAttention(d, 2, batch_first=True)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, mel, tokens):
        memory = self.encoder(mel)
        h = self.embed(tokens)
        h = h + self.cross(h, memory, memory, need_weights=False)[0]
        return self.head(self.norm(h))


def _loop(model, x, cls, method, **opts):
    return torch.stack([attribute(model, x, (int(cls[t]), t), method, **opts)[0] for t in range(len(cls))])


@pytest.mark.parametrize("method,opts", [("gradient", {}), ("gradient_x_input", {}), ("lrp", {}),
                                         ("lrp", {"attention": "cp", "composite": "epsilon-plus"}),
                                         ("integrated_gradients", {"steps": 3}), ("smoothgrad", {"samples": 2})])
def test_all_frames_of_models_without_locality_equal_the_per_frame_loop(method, opts):
    models = [randomize(ConformerCTC(), seed=5), Scores(randomize(WhisperishEncoder(explicit=False), seed=6), time_axis=1)]
    for model in models:
        x = torch.randn(1, 6, 24, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        state = model_state(model)
        with torch.no_grad():
            cls = model(x)[0].argmax(0)
        want = _loop(model, x, cls, method, **opts)
        for engine, chunk in (("auto", 5), ("batched", 64)):
            got = attribute_frames(model, x, "all", cls, method, chunk=chunk, engine=engine, **opts)
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-9)
        assert_same_state(state, model_state(model))
    with pytest.raises(ValueError, match="engine='cone' cannot run this"):
        attribute_frames(models[0], x, "all", "predicted", method, engine="cone", **opts)


def test_every_decoded_token_of_a_teacher_forced_decoder_in_one_call():
    model = randomize(TinySeq2Seq(), seed=7)
    mel = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tokens = torch.tensor([[1, 4, 2, 6, 3]])
    scores = Scores(model, time_axis=1, args=(tokens,))
    following = torch.tensor([4, 2, 6, 3, 0])  # each position explains the next token's logit
    for method in ("gradient", "lrp"):
        got = attribute_frames(scores, mel, "all", following, method)
        torch.testing.assert_close(got, _loop(scores, mel, following, method), atol=1e-12, rtol=1e-9)
    from captum.attr import Saliency

    for t in (0, 3):  # the gradient, against Captum on the model with its decoder input
        want = Saliency(lambda m, t=t: model(m, tokens)[:, t]).attribute(mel, target=int(following[t]), abs=False)
        torch.testing.assert_close(attribute_frames(scores, mel, [t], following, "gradient"), want)


def test_outputs_that_are_not_scores_are_errors_that_say_how_to_wrap_them():
    class Dicty(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return {"logits": self.lin(x), "hidden": x}
    x = torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match=r"returned dict, not a tensor of scores: wrap it as .*Scores\(model\)"):
        attribute(Dicty(), x, (1, 2), "gradient")
    wrapped = Scores(Dicty(), time_axis=1)
    got = attribute(wrapped, x, (1, 2), "gradient")  # class 1 at frame 2 of (B, frames, classes) logits
    xg = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(Dicty.forward(wrapped.model, xg)["logits"][:, 2, 1].sum(), xg)
    torch.testing.assert_close(got, want)


transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install .[test])")


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_wav2vec2_lrp_equals_the_reference_and_all_frames_the_loop(implementation):
    from .attention_nets import reference_any
    from .hf_models import wav2vec2_model

    model = Scores(wav2vec2_model(implementation).double(), time_axis=1, waveform=True)
    eager = Scores(wav2vec2_model("eager").double(), time_axis=1, waveform=True)  # the reference runs attention written out
    x = torch.randn(2, 1, 800, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    state = model_state(model)
    with torch.no_grad():
        out = model(x)
    sel = _selector(out, 1)
    for variant in ("attnlrp", "cp"):
        want = reference_any(eager, x, sel, cp=variant == "cp")
        got = attribute(model, x, sel * out, "lrp", epsilon=1e-12, attention=variant)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-7)
    one = x[:1]
    with torch.no_grad():
        cls = model(one)[0].argmax(0)
    for method in ("gradient", "lrp"):
        torch.testing.assert_close(attribute_frames(model, one, "all", cls, method, chunk=4),
                                   _loop(model, one, cls, method), atol=1e-12, rtol=1e-9)
    assert_same_state(state, model_state(model))


@pytest.mark.parametrize("factory,extra", [("examples.conformer:conformer", []),
                                           ("tests.attention_nets:whisperish", []),
                                           ("tests.hf_models:wav2vec2", ["--features", "waveform"])])
def test_naps_and_patterns_of_attention_models_from_the_cli(factory, extra, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from introspeech.cli import app

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    runner = CliRunner()
    own = ["--model-factory", factory, *extra]
    res = runner.invoke(app, ["layers", *own, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["layers"]
    assert any(r["time_axis"] == 1 and not r["local"] for r in rows)  # (batch, time, channels) after attention
    res = runner.invoke(app, ["naps", *own, "--out", str(tmp_path / "naps"), "--splits", "test", "--window", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "naps" / "summary.json").read_text())
    assert summary["utterances"] > 100 and summary["occurrences"]["phonemes"] > 1000
    assert set(summary["layers"]) >= {r["name"] for r in rows if r["time_axis"] == 1}
    if "waveform" not in extra:  # relevance-aligned patterns of every letter of a random waveform model: minutes
        res = runner.invoke(app, ["patterns", *own, "--out", str(tmp_path / "pat"), "--splits", "test"])
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("name", ["conformer", "whisper-explicit"])
def test_conservation_accounts_for_every_loss_of_relevance(name, variant):
    """Σ map − f(x) = −Σ (bias + stabilizer) over the recorded layers and operations: every rule
    that does not conserve relevance reports what it loses, the softmax rule among them."""
    from introspeech.attribution.deltas import conservation

    build, _ = MODELS[name]
    model = randomize(build(), seed=8)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    sel = _selector(out, 2)
    maps, delta = attribute(model, x, sel * out, "lrp", epsilon=1e-12, attention=variant, return_convergence_delta=True)
    rows = conservation(model, x, sel * out, "lrp", epsilon=1e-12, attention=variant)
    lost = sum(r.bias + r.stabilizer for r in rows)
    torch.testing.assert_close(delta, -lost, atol=1e-8, rtol=1e-8)
    softmax = [r for r in rows if r.layer.startswith("softmax#")]
    if variant == "cp":
        assert not softmax
    else:
        assert softmax and float(sum(r.stabilizer.abs().sum() for r in softmax)) > 1e-6


def test_the_transpose_fast_path_of_the_epsilon_rule_equals_its_definition():
    """lrp_backward with the layer's output and transpose given equals the rule evaluated by
    autograd, for Linear, Conv1d (strided, dilated, grouped) and the three normalizations."""
    from introspeech.attribution import attention as att
    from introspeech.attribution.hooks import linear_fn
    from introspeech.attribution.propagate import LinearRuleFn, lrp_backward
    from introspeech.attribution.rules import Epsilon, Gamma

    g = torch.Generator().manual_seed(9)
    rule = Epsilon(1e-3)
    x = torch.randn(2, 6, 11, generator=g, dtype=torch.float64)
    layers = [nn.Linear(11, 5), nn.Conv1d(6, 4, 3, stride=2, padding=2, dilation=2),
              nn.Conv1d(6, 6, 5, padding=2, groups=3)]
    for layer in layers:
        layer = layer.double()
        fn, w, b = linear_fn(layer), layer.weight.detach(), layer.bias.detach()
        out = fn(x, w, b)
        r = torch.randn(out.shape, generator=g, dtype=torch.float64)
        assert getattr(fn, "vjp", None) is not None
        torch.testing.assert_close(lrp_backward(rule, fn, x, w, b, r, out=out), lrp_backward(rule, fn, x, w, b, r))
        # a rule that is not the plain ε-rule never takes the fast path
        gamma = Gamma(0.5)
        torch.testing.assert_close(lrp_backward(gamma, fn, x, w, b, r, out=out), lrp_backward(gamma, fn, x, w, b, r))
    captured = []
    real = LinearRuleFn.apply
    try:
        LinearRuleFn.apply = lambda *a: captured.append(a) or real(*a)
        weight = 1 + 0.1 * torch.randn(11, generator=g, dtype=torch.float64)
        bias = torch.randn(11, generator=g, dtype=torch.float64)
        att.layer_norm(x, (11,), weight, bias, 1e-5, rule)
        att.rms_norm(x, (11,), weight, 1e-6, rule)
        gw, gb = 1 + 0.1 * torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
        att.group_norm(x, 3, gw, gb, 1e-5, rule)
    finally:
        LinearRuleFn.apply = real
    for xx, out, rl, fn, w, b, _ in captured:
        r = torch.randn(out.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(lrp_backward(rl, fn, xx, w, b, r, out=out), lrp_backward(rl, fn, xx, w, b, r))
    assert len(captured) == 3


def test_sanity_examples_of_a_model_without_locality_are_whole_utterances():
    """A crop to the receptive field would change what an attention model sees: its examples are
    the whole utterances (and a waveform map is compared as an image of 10 ms columns)."""
    from examples.conformer import conformer

    from introspeech.corpus.load import load_corpus, load_features
    from introspeech.models.description import describe
    from introspeech.sanity.cases import _waveform_2d, speech_case

    torch.manual_seed(0)
    desc = describe(conformer("tiny").eval())
    utts = load_corpus(None)["test"][:4]
    case = speech_case(desc, desc.features, utts, n_examples=2)
    lengths = {f.shape[1] for _, f in load_features(utts, desc.features)}
    assert case.inputs and all(x.shape[-1] in lengths for x in case.inputs)
    assert _waveform_2d(torch.arange(1000.0).reshape(1, 1, 1000)).shape == (160, 6)


@pytest.mark.parametrize("layer", ["blocks.0", "blocks.1.conv.pw2"])
def test_grad_cam_for_all_frames_of_a_model_without_locality_equals_the_per_frame_loop(layer):
    """No cone geometry exists for an attention model: each frame gets its own backward pass, and
    the maps must equal Grad-CAM called frame by frame."""
    model = randomize(ConformerCTC(), seed=5)
    x = torch.randn(1, 6, 24, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    state = model_state(model)
    with torch.no_grad():
        cls = model(x)[0].argmax(0)
    want = _loop(model, x, cls, "grad_cam", layer=layer)
    got = attribute_frames(model, x, "all", cls, "grad_cam", chunk=4, layer=layer)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-9)
    assert_same_state(state, model_state(model))
