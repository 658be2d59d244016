"""Layers users have: max pooling (LRP winner-takes-all), adaptive pools with Flatten + Linear
heads, smooth activations and LayerNorm / GroupNorm (gradient family exact against Captum; LRP
and guided backprop name the module they cannot handle); LRP-γ on negative scores."""

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from introspeech.attribution import Composite, Epsilon, Gamma, attribute

from .nets import assert_same_state, model_state
from .reference_lrp import dense, redistribute


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def maxpool_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                         nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()


def _reference_maxpool_lrp(net, x, cls):
    """ε-LRP (ε = 1e-9) with each max-pool passing a window's relevance to its largest input."""
    acts = [x]
    for m in net:
        acts.append(m(acts[-1]))
    r = torch.zeros(3, dtype=torch.float64)
    r[cls] = acts[-1][0, cls]
    for i in range(len(net) - 1, -1, -1):
        m, a = net[i], acts[i]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w, b = dense(m, None, tuple(a[0].shape))
            r = redistribute("epsilon", a[0].flatten(), w, b, None, r.flatten(), eps=1e-9)
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            out = acts[i + 1].flatten()
            flat_in = a.flatten()
            winners = [int(torch.nonzero(flat_in == v).flatten()[0]) for v in out]  # distinct values: one winner
            new = torch.zeros_like(flat_in)
            for j, k in enumerate(winners):
                new[k] += r.flatten()[j]
            r = new
        # ReLU, Flatten: pass
    return r.reshape(x.shape)


def test_max_pooling_passes_relevance_to_the_winner():
    net = maxpool_net()
    x = _x(2, 1, 8, 8)
    eps = Composite(conv=lambda: Epsilon(1e-9), dense=lambda: Epsilon(1e-9))
    ours = attribute(net, x, 1, "lrp", composite=eps)
    for b in range(2):
        torch.testing.assert_close(ours[b:b + 1], _reference_maxpool_lrp(net, x[b:b + 1], 1), atol=1e-8, rtol=1e-6)


ACTIVATIONS = [nn.LeakyReLU(0.1), nn.ELU(), nn.GELU(), nn.Tanh()]


def smooth_net(act, norm):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), act, nn.Conv1d(6, 6, 3, padding=1), norm, nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 4)).double().eval()


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 6), nn.BatchNorm1d(6)], ids=["groupnorm", "batchnorm"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_gradient_family_on_smooth_activations_and_norms_matches_captum(act, norm):
    net = smooth_net(act, norm.double())
    x = _x(3, 3, 12)
    state = model_state(net)
    for target in (0, 3):
        pairs = [
            (attribute(net, x, target, "gradient"), Saliency(net).attribute(x, target=target, abs=False)),
            (attribute(net, x, target, "gradient_x_input"), InputXGradient(net).attribute(x, target=target)),
            (attribute(net, x, target, "integrated_gradients", steps=10),
             IntegratedGradients(net).attribute(x, target=target, n_steps=10)),
        ]
        for got, want in pairs:
            torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-6)
    identity_rule = isinstance(act, (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh))  # LRP: relevance passes unchanged
    for method in ("guided_backprop", "deconvnet") if identity_rule else ("lrp", "guided_backprop", "deconvnet"):
        with pytest.raises(TypeError, match=rf"module '1' \({type(act).__name__}\) is not supported by {method}"):
            attribute(net, x, 0, method)
    assert_same_state(state, model_state(net))


def test_instance_norm_is_an_error_for_lrp_and_layernorm_keeps_its_gradient_elsewhere():
    torch.manual_seed(2)
    inorm = nn.Sequential(nn.Conv1d(3, 4, 3), nn.InstanceNorm1d(4), nn.ReLU()).double().eval()
    with pytest.raises(TypeError, match=r"module '1' \(InstanceNorm1d\) is not supported by lrp: instance"):
        attribute(inorm, _x(1, 3, 8), torch.ones(1, 4, 6, dtype=torch.float64), "lrp")
    net = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    x = _x(2, 5)
    torch.testing.assert_close(attribute(net, x, 1, "gradient"), Saliency(net).attribute(x, target=1, abs=False))
    # guided backprop modifies ReLUs only and takes the norm's gradient: as Captum's
    from captum.attr import GuidedBackprop
    torch.testing.assert_close(attribute(net, x, 1, "guided_backprop"), GuidedBackprop(net).attribute(x, target=1))


def test_gamma_on_a_negative_score_favours_contributions_of_its_sign():
    """A single linear layer with a negative output: both forms of γ against the formula."""
    torch.manual_seed(3)
    layer = nn.Linear(6, 1).double()
    x = _x(1, 6, seed=5)
    with torch.no_grad():
        layer.bias.fill_(-0.2)
        z = layer(x)[0, 0]
        if z > 0:
            layer.weight.neg_()
            layer.bias.fill_(-0.2)
            z = layer(x)[0, 0]
    assert z < 0
    w, b, g = layer.weight[0].detach(), float(layer.bias), 0.5
    xp, xn, wp, wn = x[0].clamp(min=0), x[0].clamp(max=0), w.clamp(min=0), w.clamp(max=0)
    for favour, zij, zb in [("output", x[0] * w + g * (xp * wn + xn * wp), b + g * min(b, 0.0)),
                            ("positive", x[0] * w + g * (xp * wp + xn * wn), b + g * max(b, 0.0))]:
        want = zij / (zij.sum() + zb - 1e-9) * z
        got = attribute(layer, x, 0, "lrp", composite=Composite(dense=lambda f=favour: Gamma(g, 1e-9, favour=f)))
        torch.testing.assert_close(got[0], want, atol=1e-12, rtol=1e-9)
    out_form = attribute(layer, x, 0, "lrp", composite=Composite(dense=lambda: Gamma(g, 1e-9)))
    assert bool((torch.sign(out_form[0]) == torch.sign(x[0] * w)).all())  # a negative score keeps its signs
