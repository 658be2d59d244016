"""Sanity checks: the similarity metrics on known cases, randomization touches exactly the intended
layers, the user's model is left bit-identical, data randomization trains on permuted labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from introspeech.asr.model import build_model
from introspeech.sanity.check import METHODS, Case, final_means, run_case, verdicts
from introspeech.sanity.digits import DigitsCNN, permuted
from introspeech.sanity.randomize import cascading, independent, randomizable_layers, reinitialize
from introspeech.sanity.similarity import similarity

from .nets import assert_same_state, conv2d_net, model_state


def test_identical_maps_are_fully_similar():
    a = np.random.default_rng(0).normal(size=(40, 60))
    assert similarity(a, a.copy()) == {"spearman_abs": 1.0, "spearman": 1.0, "ssim": 1.0, "hog": 1.0}


def test_independent_random_maps_are_dissimilar():
    rng = np.random.default_rng(1)
    sims = [similarity(rng.normal(size=(40, 60)), rng.normal(size=(40, 60))) for _ in range(20)]
    for k in ("spearman_abs", "spearman", "ssim"):
        assert abs(np.mean([s[k] for s in sims])) < 0.05, k
    assert abs(np.mean([s["hog"] for s in sims])) < 0.15


def test_a_sign_flip_changes_the_signed_but_not_the_absolute_spearman():
    a = np.random.default_rng(2).normal(size=(8, 8))
    s = similarity(a, -a)
    assert s["spearman"] == pytest.approx(-1.0) and s["spearman_abs"] == pytest.approx(1.0)
    assert s["ssim"] == pytest.approx(1.0) and s["hog"] == pytest.approx(1.0)
    # a monotone rescaling keeps the ranks
    assert similarity(a, 3 * a)["spearman"] == pytest.approx(1.0)


def test_constant_maps_share_nothing():
    a = np.random.default_rng(3).normal(size=(10, 10))
    assert similarity(a, np.zeros_like(a))["spearman_abs"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        similarity(a, a[:5])


def _changed(original: torch.nn.Module, other: torch.nn.Module, layers: list[str]) -> list[str]:
    out = []
    for name in layers:
        a, b = original.get_submodule(name).state_dict(), other.get_submodule(name).state_dict()
        if any(not torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked")):
            out.append(name)
    return out


def test_cascading_randomizes_exactly_the_top_layers_and_resets_batchnorm():
    model = build_model("tiny", seed=0)
    with torch.no_grad():  # give BatchNorm trained-looking statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    before = model_state(model)
    layers = randomizable_layers(model)
    assert layers == [f"layers.{n}" for n in model.config.layer_names]
    steps = list(cascading(model, layers, seed=5))
    for k, (name, net) in enumerate(steps, start=1):
        assert name == layers[-k]
        assert _changed(model, net, layers) == layers[-k:]
        for layer in layers[-k:]:
            for m in net.get_submodule(layer).modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
                    assert torch.equal(m.running_var, torch.ones_like(m.running_var))
    for name, net in independent(model, layers, seed=5):
        assert _changed(model, net, layers) == [name]
        # the same seeded weights as in the cascade
        casc = dict(steps)[name]
        assert torch.equal(net.get_submodule(name).conv.weight if name != "layers.output" else net.layers.output.weight,
                           casc.get_submodule(name).conv.weight if name != "layers.output" else casc.layers.output.weight)
    assert_same_state(before, model_state(model))


def test_generic_models_randomize_their_parameter_leaves():
    net = conv2d_net()
    names = randomizable_layers(net)
    assert names == ["0", "1", "3", "4", "8"]
    copy = DigitsCNN()
    reinitialize(copy, "8", seed=1)
    with pytest.raises(ValueError, match="no parameters"):
        reinitialize(copy, "1", seed=1)


def test_checks_leave_the_model_bit_identical_and_detect_randomization():
    torch.manual_seed(0)
    net = conv2d_net().float().train()  # training mode must survive too
    before = model_state(net)
    rng = np.random.default_rng(0)
    inputs = [torch.tensor(rng.normal(size=(1, 2, 10, 10)), dtype=torch.float32) for _ in range(3)]
    case = Case("toy", net, inputs, [0, 1, 2], lambda m: m[0].sum(0).detach().double().numpy(),
                {"layer": "3", "low": -4.0, "high": 4.0})
    result = run_case(case, list(METHODS), seed=0)
    assert_same_state(before, model_state(net))
    assert set(final_means(result)) == set(METHODS) and set(verdicts(result)) == set(METHODS)
    for r in result.values():
        assert [c["layer"] for c in r["cascading"]] == ["8", "4", "3", "1", "0"]
        assert [c["layer"] for c in r["independent"]] == ["8", "4", "3", "1", "0"]
        for c in r["cascading"]:
            assert -1.0 <= c["spearman"]["mean"] <= 1.0
    # randomizing every layer changes the plain gradient
    assert final_means(result)["gradient"]["spearman"] < 0.9
    with pytest.raises(ValueError, match="unknown method"):
        run_case(case, ["nonsense"])


def test_permuted_labels_are_a_permutation():
    y = torch.arange(50) % 10
    p = permuted(y, seed=3)
    assert sorted(p.tolist()) == sorted(y.tolist()) and not torch.equal(p, y)


def test_random_label_speech_model_trains_on_shuffled_transcripts_and_is_cached(small_corpus, tmp_path):
    from introspeech.asr.train import feature_config_for
    from introspeech.corpus.load import load_corpus
    from introspeech.sanity.cases import random_label_speech_model

    model = build_model("tiny", seed=0)
    utts = load_corpus(small_corpus)["train"][:40]
    cfg = feature_config_for("tiny")
    net = random_label_speech_model(model, cfg, utts, tmp_path / "rl", steps=3, seed=0)
    assert net.config == model.config
    stamp = (tmp_path / "rl" / "last.safetensors").stat().st_mtime_ns
    again = random_label_speech_model(model, cfg, utts, tmp_path / "rl", steps=3, seed=0)
    assert (tmp_path / "rl" / "last.safetensors").stat().st_mtime_ns == stamp
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), model.parameters()))
    other = random_label_speech_model(model, cfg, utts[:30], tmp_path / "rl", steps=3, seed=0)
    assert (tmp_path / "rl" / "last.safetensors").stat().st_mtime_ns != stamp  # other utterances: trained afresh
    fresh = random_label_speech_model(model, cfg, utts[:30], tmp_path / "rl2", steps=3, seed=0)
    for a, b in zip(other.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)  # ... as into an empty folder: nothing of the first run kept


def test_train_digits_reuses_only_an_identical_training():
    """A repeated training returns a new module with the weights a fresh training gives; other
    seeds or labels train anew."""
    from introspeech.sanity import digits as d

    xtr, ytr, _, _ = d.digits(0)
    x, y = xtr[:256], ytr[:256]
    d._TRAINED.clear()
    first = d.train_digits(x, y, 2, 0)
    again = d.train_digits(x, y, 2, 0)
    assert again is not first and len(d._TRAINED) == 1
    d._TRAINED.clear()
    fresh = d.train_digits(x, y, 2, 0)
    for a, b, c in zip(first.state_dict().values(), again.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c)
    with torch.no_grad():
        again[0].weight.add_(1.0)  # the kept weights are a copy: changing a returned model leaves them
    assert torch.equal(d.train_digits(x, y, 2, 0)[0].weight, first[0].weight)
    other_seed = d.train_digits(x, y, 2, 1)
    other_labels = d.train_digits(x, d.permuted(y), 2, 0)
    assert not torch.equal(other_seed[0].weight, first[0].weight)
    assert not torch.equal(other_labels[0].weight, first[0].weight)
