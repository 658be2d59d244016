"""Convergence deltas (Captum's return_convergence_delta) and LRP's layer-by-layer bookkeeping."""

import pytest
import torch

from introspeech.attribution import attribute
from introspeech.attribution.deltas import conservation

from .nets import bias_free, conv1d_net, quartznet_net


def _x(b=2, t=20, seed=1):
    return torch.randn(b, 6, t, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _score(net, x, cls, t):
    with torch.no_grad():
        return net(x)[:, cls, t]


def test_integrated_gradients_delta_is_the_completeness_gap():
    net = conv1d_net(2)
    x = _x()
    base = torch.full_like(x, -0.5)
    maps, delta = attribute(net, x, (3, 5), "integrated_gradients", baselines=base, steps=8,
                            return_convergence_delta=True)
    gap = _score(net, x, 3, 5) - _score(net, base, 3, 5)
    torch.testing.assert_close(delta, maps.flatten(1).sum(1) - gap, atol=1e-12, rtol=0)
    _, fine = attribute(net, x, (3, 5), "integrated_gradients", baselines=base, steps=256,
                        return_convergence_delta=True)
    assert float(fine.abs().max()) < min(5e-3 * float(gap.abs().max()), float(delta.abs().max()) / 5)


def test_deep_taylor_root_delta_and_rules_delta():
    net = conv1d_net(4)
    x = _x(seed=4)
    root = torch.zeros_like(x)
    maps, delta = attribute(net, x, (1, 3), "deep_taylor", root=root, return_convergence_delta=True)
    torch.testing.assert_close(delta, maps.flatten(1).sum(1) - (_score(net, x, 1, 3) - _score(net, root, 1, 3)))
    maps, delta = attribute(net, x, (1, 3), "deep_taylor", low=-8.0, high=8.0, return_convergence_delta=True)
    torch.testing.assert_close(delta, maps.flatten(1).sum(1) - _score(net, x, 1, 3))


@pytest.mark.parametrize("make", [lambda: conv1d_net(3), lambda: quartznet_net(2, bias=True)], ids=["chain", "residual"])
def test_lrp_total_delta_is_what_the_biases_absorb(make):
    net = make()
    x = _x(t=24)
    maps, delta = attribute(net, x, (2, 4), "lrp", composite="epsilon", epsilon=1e-12, return_convergence_delta=True)
    layers = conservation(net, x, (2, 4), composite="epsilon", epsilon=1e-12)
    absorbed = sum(layer.bias for layer in layers)
    torch.testing.assert_close(delta, -absorbed, atol=1e-9, rtol=1e-6)
    for layer in layers:  # ε → 0: no stabilizer share
        assert float(layer.stabilizer.abs().max()) < 1e-9


def test_layer_bookkeeping_follows_the_chain_and_the_bias_formula():
    net = conv1d_net(5)
    x = _x(t=16, seed=5)
    layers = conservation(net, x, (1, 2), composite="epsilon", epsilon=0.05)
    assert [layer.layer for layer in layers] == ["6", "3", "0"]
    torch.testing.assert_close(layers[0].relevance_out, _score(net, x, 1, 2))
    for upper, lower in zip(layers, layers[1:]):  # ReLUs pass relevance: what one layer gives, the next receives
        torch.testing.assert_close(upper.relevance_in, lower.relevance_out)
    # the output layer (a 1×1 conv with bias, ε-rule): bias share = b_c · R_c / (z_c + ε·sign z_c)
    with torch.no_grad():
        z = net(x)[:, 1, 2]
    want = net[6].bias[1].detach() * z / (z + 0.05 * torch.sign(z))
    torch.testing.assert_close(layers[0].bias, want)
    assert float(layers[0].stabilizer.abs().min()) > 0


def test_methods_without_completeness_say_so():
    net = conv1d_net(1)
    with pytest.raises(ValueError, match="method 'gradient' has no completeness property.*integrated_gradients"):
        attribute(net, _x(), (0, 0), "gradient", return_convergence_delta=True)
    with pytest.raises(ValueError, match="grad_cam' has no completeness"):
        attribute(net, _x(), (0, 0), "grad_cam", layer="3", return_convergence_delta=True)


def test_bias_free_helper_removes_every_bias():
    net = bias_free(quartznet_net(1, bias=True))
    x = _x()
    maps, delta = attribute(net, x, (0, 2), "lrp", composite="epsilon", epsilon=0.0, return_convergence_delta=True)
    assert float(delta.abs().max()) < 1e-10
