"""Every LRP rule against the slow explicit-z_ij reference, on Linear, Conv1d (stride, padding,
dilation) and Conv2d nets with BatchNorm (folded by the canonizer vs by hand in the reference)."""

import pytest
import torch

from introspeech.attribution import AlphaBeta, Composite, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus, attribute

from .nets import conv1d_net, conv2d_net, dense_net
from .reference_lrp import reference_lrp, select

RULES = {
    "epsilon": (lambda: Epsilon(1e-9), {}),
    "gamma": (lambda: Gamma(0.25, 1e-9), {"gamma": 0.25}),
    "gamma-positive": (lambda: Gamma(0.25, 1e-9, favour="positive"), {"gamma": 0.25, "favour": "positive"}),
    "alpha-beta": (lambda: AlphaBeta(2.0, 1.0), {}),
    "zplus": (lambda: ZPlus(), {}),
    "wsquare": (lambda: WSquare(), {}),
    "flat": (lambda: Flat(), {}),
}
NETS = [
    ("dense", dense_net, (7,), [1, 2]),
    ("conv1d-s2-p2", lambda: conv1d_net(stride=2, padding=2), (6, 13), [(3, 2), (0, 6)]),
    ("conv1d-dil2", lambda: conv1d_net(stride=1, dilation=2, padding=3), (6, 13), [(1, 0), (4, 10)]),
    ("conv2d", conv2d_net, (2, 10, 10), [0, 3]),
]


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("name,make,shape,targets", NETS)
def test_rule_matches_explicit_reference(rule, name, make, shape, targets):
    net = make()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    factory, kw = RULES[rule]
    n_lin = sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)) for m in net)
    for target in targets:
        ours = attribute(net, x, target, "lrp", composite=Composite(conv=factory, dense=factory))
        for b in range(2):
            ref = reference_lrp(net, x[b], select(net, x[b], target), [rule.removesuffix("-positive")] * n_lin, **kw)
            torch.testing.assert_close(ours[b], ref, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("name,make,shape,targets", NETS)
def test_zbox_first_layer_matches_reference(name, make, shape, targets):
    net = make()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # bounds per input feature (per channel / Mel bin), broadcast over positions
    low = x.amin(dim=tuple(i for i in range(x.dim()) if i != 1), keepdim=True)[0] - 0.1
    high = x.amax(dim=tuple(i for i in range(x.dim()) if i != 1), keepdim=True)[0] + 0.1
    n_lin = sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)) for m in net)
    comp = Composite(conv=lambda: Epsilon(1e-9), dense=lambda: Epsilon(1e-9), first=lambda: ZBox(low, high))
    for target in targets:
        ours = attribute(net, x, target, "lrp", composite=comp)
        for b in range(2):
            ref = reference_lrp(net, x[b], select(net, x[b], target), ["zbox"] + ["epsilon"] * (n_lin - 1),
                                low=low, high=high)
            torch.testing.assert_close(ours[b], ref, atol=1e-8, rtol=1e-6)
