"""Feature visualization: a planted detector is recovered, each regularizer does its job, 2-D image
models work, objectives parse, the prior keeps results near the data, the model is left untouched.
(The Mel inversion round trip is tested in test_audio.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from introspeech.featvis.objectives import channel, letter, neuron, output, parse
from introspeech.featvis.optimize import evaluate, visualize
from introspeech.featvis.regularize import Penalties, Robustness

from .nets import assert_same_state, model_state


def _detector(pattern: torch.Tensor) -> nn.Module:
    net = nn.Sequential(nn.Conv1d(pattern.shape[1], 1, pattern.shape[2]), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(pattern)
        net[0].bias.zero_()
    return net


@pytest.mark.parametrize("param", ["direct", "fourier"])
def test_optimization_recovers_a_planted_detector(param):
    pattern = torch.randn(1, 8, 5, generator=torch.Generator().manual_seed(0))
    net = _detector(pattern).train()
    before = model_state(net)
    v = visualize(net, channel("0", 0), (1, 8, 5), low=-3, high=3, parameterization=param, steps=300, lr=0.05,
                  penalties=Penalties(l2=50.0), seed=1)
    assert np.corrcoef(v.input.flatten(), pattern.flatten())[0, 1] > 0.95
    assert v.objective == pytest.approx(evaluate(net, channel("0", 0), v.input))
    assert_same_state(before, model_state(net))


def test_visualization_is_deterministic_for_a_seed():
    net = _detector(torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(2)))
    a = visualize(net, channel("0", 0), (1, 6, 20), steps=20, seed=3)
    b = visualize(net, channel("0", 0), (1, 6, 20), steps=20, seed=3)
    assert torch.equal(a.input, b.input)


def _hf_energy(x: torch.Tensor) -> float:
    return float((x[..., 1:] - x[..., :-1]).pow(2).mean() + (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean())


def test_total_variation_lowers_high_frequency_energy():
    net = nn.Sequential(nn.Conv1d(10, 4, 3, padding=1), nn.ReLU())
    torch.manual_seed(0)
    plain = visualize(net, channel("0", 1), (1, 10, 40), parameterization="direct", steps=150, seed=0)
    smooth = visualize(net, channel("0", 1), (1, 10, 40), parameterization="direct", steps=150, seed=0,
                       penalties=Penalties(tv_time=2.0, tv_freq=2.0))
    assert _hf_energy(smooth.input) < 0.5 * _hf_energy(plain.input)
    blurred = visualize(net, channel("0", 1), (1, 10, 40), parameterization="direct", steps=150, seed=0,
                        penalties=Penalties(blur=1.0))
    assert _hf_energy(blurred.input) < 0.5 * _hf_energy(plain.input)


def test_jitter_makes_the_result_robust_to_shifts():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(6, 8, 3), nn.ReLU(), nn.Conv1d(8, 1, 3))  # a neuron at one frame
    obj = neuron("2", 0, 10)
    shape = (1, 6, 24)

    def shifted_mean(x):
        return np.mean([evaluate(net, obj, torch.roll(x, k, dims=-1)) for k in (-3, -2, -1, 1, 2, 3)])

    plain = visualize(net, obj, shape, parameterization="direct", steps=200, seed=0)
    robust = visualize(net, obj, shape, parameterization="direct", steps=200, seed=0, robustness=Robustness(jitter=3))
    assert shifted_mean(robust.input) / robust.objective > shifted_mean(plain.input) / plain.objective


def test_works_on_a_2d_image_cnn():
    from introspeech.sanity.digits import digits, train_digits

    xtr, ytr, _, _ = digits(0)
    net = train_digits(xtr[:600], ytr[:600], epochs=8)
    v = visualize(net, output(3), (1, 1, 8, 8), low=0.0, high=1.0, image=True, steps=120, seed=0,
                  robustness=Robustness(jitter=1, scale=0.1, rotate=10))
    with torch.no_grad():
        assert int(net(v.input).argmax()) == 3
    assert v.input.min() >= 0 and v.input.max() <= 1


def test_objectives_parse_and_combine():
    out = torch.arange(2 * 29 * 4, dtype=torch.float32).reshape(2, 29, 4)
    s, z = letter("s"), letter("z")
    torch.testing.assert_close((s - z)({}, out), out[:, 18].mean(1) - out[:, 25].mean(1))
    torch.testing.assert_close(parse("letter:s@2 + letter:z")({}, out), out[:, 18, 2] + out[:, 25].mean(1))
    torch.testing.assert_close((2 * s)({}, out), 2 * out[:, 18].mean(1))
    assert parse("channel:layer9:17").layers == {"layer9"}
    with pytest.raises(ValueError, match="cannot read"):
        parse("letters:s")
    with pytest.raises(ValueError, match="unknown letter"):
        letter("ß")


def test_the_learned_prior_keeps_results_near_the_data(tmp_path):
    from introspeech.featvis.prior import PriorConfig, load_prior, naturalness, save_prior, train_prior

    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 8, 16, generator=g)  # "real data": smooth combinations of three patterns
    basis = torch.nn.functional.avg_pool1d(basis, 3, 1, 1)
    real = torch.einsum("nk,kmt->nmt", torch.randn(600, 3, generator=g), basis)
    prior, info = train_prior(real, PriorConfig(n_mels=8, window=16, hidden=32, latent=4), steps=600)
    assert info["valid_error"] < 0.2 * info["valid_variance"]
    save_prior(prior, tmp_path / "p", {"note": "test"})
    back, meta = load_prior(tmp_path / "p")
    x = real[:3]
    torch.testing.assert_close(back(x), prior(x))
    net = _detector(torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(5)))
    direct = visualize(net, channel("0", 0), (1, 8, 16), parameterization="direct", steps=150, seed=0)
    latent = visualize(net, channel("0", 0), (1, *prior.latent_shape), parameterization="prior", steps=150, seed=0,
                       decoder=prior.decoder)
    assert latent.input.shape == (1, 8, 16)
    nd, nl = naturalness(direct.input, prior, real), naturalness(latent.input, prior, real)
    assert nl["prior_error_ratio"] < nd["prior_error_ratio"]
    with pytest.raises(Exception, match="no prior"):
        load_prior(tmp_path / "missing")
    (tmp_path / "model.safetensors").write_bytes(b"weights")  # a prior saved with its model leaves the model alone
    save_prior(prior, tmp_path / "model.prior")
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"
    assert (tmp_path / "model.prior.safetensors").is_file() and load_prior(tmp_path / "model.prior")[0] is not None


def test_l1_and_l2_pull_the_input_towards_the_data_mean():
    net = nn.Sequential(nn.Conv1d(10, 4, 3, padding=1), nn.ReLU())
    torch.manual_seed(1)
    obj = channel("0", 2)
    plain = visualize(net, obj, (1, 10, 30), parameterization="direct", steps=150, seed=0)
    for pen in (Penalties(l2=5.0), Penalties(l1=5.0)):
        reg = visualize(net, obj, (1, 10, 30), parameterization="direct", steps=150, seed=0, penalties=pen)
        assert reg.input.abs().mean() < 0.7 * plain.input.abs().mean(), pen


def test_mel_shift_and_stretch_make_the_result_robust_to_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))  # a (Mel, time) detector at one place
    wrapped = nn.Sequential(nn.Unflatten(1, (1, 12)), net, nn.Flatten(1, 2))  # (B, 12, T) → (B, 1·8, T-4)
    obj = neuron("1", 0, (4, 8))
    shape = (1, 12, 20)

    def shifted_mean(x):
        vals = [evaluate(wrapped, obj, torch.roll(x, k, dims=1)) for k in (-1, 1)]
        return float(np.mean(vals))

    plain = visualize(wrapped, obj, shape, parameterization="direct", steps=200, seed=0)
    robust = visualize(wrapped, obj, shape, parameterization="direct", steps=200, seed=0,
                       robustness=Robustness(shift=1, stretch=0.1))
    assert shifted_mean(robust.input) / robust.objective > shifted_mean(plain.input) / plain.objective


def test_image_rotation_and_scale_robustness():
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))
    obj = neuron("2", 0, (4, 4))

    def rotated_mean(x):
        vals = []
        for deg in (-15, 15):
            a = np.radians(deg)
            theta = torch.tensor([[[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]]], dtype=torch.float32)
            vals.append(evaluate(net, obj, F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False),
                                                           align_corners=False)))
        return float(np.mean(vals))

    plain = visualize(net, obj, (1, 1, 12, 12), image=True, parameterization="direct", steps=200, seed=0)
    robust = visualize(net, obj, (1, 1, 12, 12), image=True, parameterization="direct", steps=200, seed=0,
                       robustness=Robustness(rotate=15, scale=0.1))
    assert rotated_mean(robust.input) / robust.objective > rotated_mean(plain.input) / plain.objective


def test_featvis_command_writes_its_own_report(tmp_path):
    from typer.testing import CliRunner

    from introspeech.cli import app

    res = CliRunner().invoke(app, ["featvis", "--objective", "letter:s", "--params", "direct", "--steps", "2",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "index.html").read_text()
    assert "<h2>Feature visualization</h2>" in html and "letter_s_direct.wav" in html
    assert (tmp_path / "figures" / "featvis.png").is_file()
