"""Properties: conservation, completeness, LRP-0 = gradient×input, batch = single calls,
clear errors, and the model left bit-identical (also when a call raises)."""

import pytest
import torch
from torch import nn

from introspeech.attribution import attribute
from introspeech.attribution.api import selection
from introspeech.attribution.methods import find_root

from .nets import assert_same_state, conv1d_net, conv2d_net, model_state


def bias_free_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.Conv1d(6, 6, 3, stride=2, bias=False),
                         nn.ReLU(), nn.Conv1d(6, 4, 1, bias=False)).double().eval()


def x1d(b=3, t=15, seed=0, c=3):
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_lrp_epsilon_conserves_relevance_without_biases():
    net = bias_free_net()
    x = x1d()
    out = net(x)
    r = attribute(net, x, (2, 3), "lrp", composite="epsilon", epsilon=1e-12)
    torch.testing.assert_close(r.flatten(1).sum(1), out[:, 2, 3], atol=1e-9, rtol=1e-9)


def test_lrp0_equals_gradient_times_input_on_bias_free_relu_net():
    net = bias_free_net(1)
    x = x1d(seed=1)
    a = attribute(net, x, (1, 4), "lrp", composite="epsilon", epsilon=0.0)
    torch.testing.assert_close(a, attribute(net, x, (1, 4), "gradient_x_input"), atol=1e-10, rtol=1e-8)


def test_integrated_gradients_completeness():
    net = conv1d_net(2)
    x = x1d(c=6, t=20, seed=2)
    base = torch.full_like(x, -0.5)
    a = attribute(net, x, (3, 5), "integrated_gradients", baselines=base, steps=600, integration="riemann_middle")
    with torch.no_grad():
        gap = net(x)[:, 3, 5] - net(base)[:, 3, 5]
    torch.testing.assert_close(a.flatten(1).sum(1), gap, atol=2e-3 * float(gap.abs().max()) + 1e-6, rtol=0)


OPTIONS = {
    "gradient": {}, "gradient_x_input": {}, "guided_backprop": {}, "deconvnet": {},
    "integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4, "stdev": 0.2},
    "lrp": {"composite": "epsilon-gamma-box", "low": -6.0, "high": 6.0}, "deep_taylor": {"low": -6.0, "high": 6.0},
    "grad_cam": {"layer": "3"}, "guided_grad_cam": {"layer": "3"},
}


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_batch_of_targets_equals_single_calls(method):
    net = conv1d_net(3)
    x = x1d(b=4, c=6, t=18, seed=3)
    targets = torch.tensor([[0, 1], [4, 8], [2, 0], [1, 5]])
    state = model_state(net)
    batched = attribute(net, x, targets, method, **OPTIONS[method])
    for b in range(4):
        single = attribute(net, x[b:b + 1], (int(targets[b, 0]), int(targets[b, 1])), method, **OPTIONS[method])
        if method == "smoothgrad":  # the noise of row b differs when drawn alone; compare with the same noise
            continue
        torch.testing.assert_close(batched[b:b + 1], single, atol=1e-10, rtol=1e-8)
    assert_same_state(state, model_state(net))


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_model_untouched_including_train_mode_and_failures(method):
    net = conv2d_net(1).train()  # attribute runs in eval mode and must restore train mode
    net[1].eval()  # a mixed state must come back exactly
    x = torch.randn(2, 2, 10, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    state = model_state(net)
    opts = dict(OPTIONS[method])
    if "layer" in opts:
        opts["layer"] = "3"
    attribute(net, x, 1, method, **opts)
    assert_same_state(state, model_state(net))
    with pytest.raises(ValueError, match="out of range"):
        attribute(net, x, 9, method, **opts)
    assert_same_state(state, model_state(net))


def test_errors_name_the_module_and_the_alternatives():
    net = nn.Sequential(nn.Linear(4, 5), nn.ELU(), nn.Linear(5, 2)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    state = model_state(net)
    for method in ("lrp", "guided_backprop", "deconvnet"):
        with pytest.raises(TypeError, match=r"module '1' \(ELU\) is not supported.*gradient, gradient_x_input"):
            attribute(net, x, 0, method)
    assert_same_state(state, model_state(net))
    attribute(net, x, 0, "integrated_gradients", steps=4)  # gradient methods handle it
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        attribute(net, x, 0, "magic")
    with pytest.raises(TypeError, match="has no option"):
        attribute(net, x, 0, "gradient", steps=3)
    with pytest.raises(ValueError, match="needs the input bounds"):
        attribute(conv1d_net(), x1d(c=6), (0, 0), "lrp", composite="epsilon-gamma-box")
    with pytest.raises(ValueError, match="outside its bounds"):
        attribute(conv1d_net(), x1d(c=6) * 10, (0, 0), "lrp", composite="deep-taylor", low=-1.0, high=1.0)


def test_deep_taylor_with_root_point():
    net = conv1d_net(4)
    x = x1d(b=2, c=6, t=16, seed=4)
    target = torch.tensor([[1, 3], [2, 2]])
    x0 = find_root(net, x, selection(net, x, target)[0])
    with torch.no_grad():
        f0 = net(x0)[torch.arange(2), target[:, 0], target[:, 1]]
        fx = net(x)[torch.arange(2), target[:, 0], target[:, 1]]
    assert float(f0.abs().max()) < 1e-3 * (1 + float(fx.abs().max()))
    r = attribute(net, x, target, "deep_taylor", root=x0)
    g = attribute(net, x0, target, "gradient")
    torch.testing.assert_close(r, (x - x0) * g)
    rs = attribute(net, x, target, "deep_taylor", root="search")
    torch.testing.assert_close(rs, r)
