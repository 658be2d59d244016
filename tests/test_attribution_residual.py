"""Residual and separable networks: LRP against the explicit z_ij reference (relevance shared at
additions), conservation and LRP-0 = gradient×input on bias-free blocks, the gradient family
against Captum, in-place ReLUs, and operations between modules that no rule covers."""

import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, InputXGradient, IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from introspeech.attribution import Composite, Epsilon, Gamma, ZPlus, attribute
from introspeech.graph import trace

from .nets import assert_same_state, model_state, quartznet_net, resnet2d_net, separable2d_net, zero_shift_bn
from .reference_lrp import reference_graph_lrp, select

NETS = [
    ("quartznet", lambda: quartznet_net(3), (6, 20), [(2, 3), (0, 9)]),
    ("resnet2d", lambda: resnet2d_net(4, inplace=False), (1, 8, 8), [1, 3]),
    ("separable2d", lambda: separable2d_net(5), (1, 8, 8), [0, 2]),
]
RULES = {"epsilon": lambda: Epsilon(1e-9), "gamma": lambda: Gamma(0.25, 1e-9), "zplus": ZPlus}


def _x(shape, b=2, seed=1):
    return torch.randn(b, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("name,make,shape,targets", NETS)
def test_lrp_on_residual_nets_matches_explicit_reference(rule, name, make, shape, targets):
    net = make()
    x = _x(shape)
    comp = Composite(conv=RULES[rule], dense=RULES[rule])
    for target in targets:
        ours = attribute(net, x, target, "lrp", composite=comp)
        for b in range(2):
            ref = reference_graph_lrp(net, x[b], select(net, x[b], target), rule)
            torch.testing.assert_close(ours[b], ref, atol=1e-8, rtol=1e-6)


def test_bias_free_residual_block_conserves_and_lrp0_is_gradient_x_input():
    """The issue's case: depthwise + pointwise conv, BatchNorm, a 1×1 skip added before the ReLU."""
    net = zero_shift_bn(quartznet_net(5, bias=False))
    with torch.no_grad():
        net[-1].bias.zero_()
    x = _x((6, 24), b=3)
    with torch.no_grad():
        score = net(x)[:, 2, 5]
    for canonize in (True, False):
        r = attribute(net, x, (2, 5), "lrp", composite="epsilon", epsilon=0.0, canonize=canonize)
        torch.testing.assert_close(r.flatten(1).sum(1), score, atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(r, attribute(net, x, (2, 5), "gradient_x_input"), atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("name,make,shape,targets", NETS)
def test_gradient_family_on_residual_nets_matches_captum(name, make, shape, targets):
    net = make()
    x = _x(shape, b=3)
    for target in targets:
        pairs = [
            (attribute(net, x, target, "gradient"), Saliency(net).attribute(x, target=target, abs=False)),
            (attribute(net, x, target, "gradient_x_input"), InputXGradient(net).attribute(x, target=target)),
            (attribute(net, x, target, "guided_backprop"), GuidedBackprop(net).attribute(x, target=target)),
            (attribute(net, x, target, "deconvnet"), Deconvolution(net).attribute(x, target=target)),
            (attribute(net, x, target, "integrated_gradients", steps=12),
             IntegratedGradients(net).attribute(x, target=target, n_steps=12)),
        ]
        layer = {"quartznet": "3.main", "resnet2d": "4", "separable2d": "3"}[name]
        module = dict(net.named_modules())[layer]
        cam = LayerGradCam(net, module).attribute(x, target=target, relu_attributions=True)
        ours = GradCamAtLayer(net, layer, x, target)
        pairs.append((ours, cam))
        for got, want in pairs:
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def GradCamAtLayer(net, layer, x, target):  # noqa: N802 - the layer map, before upsampling
    from introspeech.attribution.cam import GradCAM

    return GradCAM(net, layer).layer_map(x, target).unsqueeze(1)


@pytest.mark.parametrize("method", ["lrp", "guided_backprop", "deconvnet", "gradient", "deep_taylor"])
def test_inplace_relus_give_the_same_maps_and_leave_the_model_untouched(method):
    a, b = resnet2d_net(2, inplace=True), resnet2d_net(2, inplace=False)
    x = _x((1, 8, 8), b=2)
    state = model_state(a)
    opts = {"low": -5.0, "high": 5.0} if method == "deep_taylor" else {}
    torch.testing.assert_close(attribute(a, x, 2, method, **opts), attribute(b, x, 2, method, **opts), atol=0, rtol=0)
    assert_same_state(state, model_state(a))


class Gated(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.conv, self.op = nn.Conv1d(3, 4, 3, padding=1).double(), op

    def forward(self, x):
        return self.op(self.conv(x))


@pytest.mark.parametrize("op,name", [(lambda h: torch.exp(h), "exp"),
                                     (lambda h: h / h.abs().amax(-1, keepdim=True), "abs"),
                                     (lambda h: torch.log_softmax(h, 1), "log_softmax")])
def test_operations_between_modules_without_a_rule_raise_for_lrp(op, name):
    net = Gated(op)
    x = _x((3, 10))
    state = model_state(net)
    with pytest.raises(ValueError, match=rf"operation '{name}' between modules is not supported by lrp"):
        attribute(net, x, (1, 2), "lrp")
    assert_same_state(state, model_state(net))
    attribute(net, x, (1, 2), "gradient")  # the gradient family handles any operation


class TwoConsumers(nn.Module):
    """A conv whose output feeds a BatchNorm and also the output directly: folding would change it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv1d(3, 4, 3, padding=1, bias=False), nn.BatchNorm1d(4)
        self.head = nn.Conv1d(4, 2, 1, bias=False)

    def forward(self, x):
        h = self.conv(x)
        return self.head(torch.relu(self.bn(h)) + h)


def test_batchnorm_is_not_folded_when_the_layer_output_has_other_consumers():
    torch.manual_seed(0)
    net = zero_shift_bn(TwoConsumers().double().eval())
    with torch.no_grad():
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
    x = _x((3, 12))
    assert trace(net, x).folded == {}
    r = attribute(net, x, (1, 4), "lrp", composite="epsilon", epsilon=0.0)
    with torch.no_grad():
        score = net(x)[:, 1, 4]
    torch.testing.assert_close(r.flatten(1).sum(1), score, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(r, attribute(net, x, (1, 4), "gradient_x_input"), atol=1e-9, rtol=1e-7)


class _Affine(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.lin, self.op = nn.Linear(4, 4).double(), op

    def forward(self, x):
        return self.op(self.lin(x))


_C = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64)


@pytest.mark.parametrize("op", [lambda h: 0.5 - h, lambda h: torch.rsub(h, 0.5), lambda h: torch.rsub(_C, h),
                                lambda h: _C - h, lambda h: h - _C, lambda h: _C + h, lambda h: torch.add(h, _C, alpha=2.0),
                                lambda h: h * _C, lambda h: h / _C, lambda h: -h, lambda h: h - 2 * h.flip(-1)],
                         ids=["float-x", "rsub", "rsub-tensor", "c-x", "x-c", "c+x", "add-alpha", "x*c", "x/c", "neg",
                              "x-x"])
def test_affine_operations_between_modules_keep_their_value_and_give_lrp_epsilon(op):
    """In a network of linear maps and constants, LRP-ε with ε → 0 is gradient×input (biases and
    constants absorb the rest); the modified forward pass computes the same values."""
    from introspeech.attribution.hooks import forward_graph
    from introspeech.attribution.methods import lrp

    torch.manual_seed(0)
    net = _Affine(op)
    x = _x((4,))
    _, value = forward_graph(net, x, lrp(net, x, None, epsilon=1e-12).backward)
    torch.testing.assert_close(value.detach(), net(x).detach())
    torch.testing.assert_close(attribute(net, x, 1, "lrp", epsilon=1e-12), attribute(net, x, 1, "gradient_x_input"),
                               atol=1e-10, rtol=1e-8)


def test_an_addition_scaling_the_input_dependent_term_is_an_error():
    net = _Affine(lambda h: torch.add(_C, h, alpha=2.0))
    with pytest.raises(ValueError, match="operation 'add' between modules is not supported by lrp"):
        attribute(net, _x((4,)), 1, "lrp")
