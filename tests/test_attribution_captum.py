"""introspeech vs Captum on random Conv1d / Conv2d nets with BatchNorm, float64, to 1e-6."""

import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)

from introspeech.attribution import attribute

from .nets import conv1d_net, conv2d_net

TOL = 1e-6
CASES = [
    ("conv1d", conv1d_net, (3, 6, 24), [(2, 3), (0, 0), (4, 11)]),
    ("conv2d", conv2d_net, (3, 2, 10, 10), [1, 3]),
]


def _inputs(shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name,make,shape,targets", CASES)
def test_gradient_family_matches_captum(name, make, shape, targets):
    net = make()
    x = _inputs(shape)
    for target in targets:
        pairs = [
            (attribute(net, x, target, "gradient"), Saliency(net).attribute(x, target=target, abs=False)),
            (attribute(net, x, target, "gradient_x_input"), InputXGradient(net).attribute(x, target=target)),
            (attribute(net, x, target, "guided_backprop"), GuidedBackprop(net).attribute(x, target=target)),
            (attribute(net, x, target, "deconvnet"), Deconvolution(net).attribute(x, target=target)),
        ]
        for method in ("gausslegendre", "riemann_right", "riemann_trapezoid"):
            ours = attribute(net, x, target, "integrated_gradients", steps=16, integration=method, internal_batch_size=10)
            ref = IntegratedGradients(net).attribute(x, target=target, n_steps=16, method=method)
            if method == "riemann_trapezoid":  # Captum's trapezoid weights sum to (n-1)/n, ours to 1
                ref = ref * 16 / 15
            pairs.append((ours, ref))
        for ours, ref in pairs:
            assert ours.shape == x.shape
            torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("name,make,shape,targets", CASES)
def test_smoothgrad_matches_captum_with_the_same_noise(name, make, shape, targets):
    net = make()
    x = _inputs(shape)
    target = targets[0]
    torch.manual_seed(123)
    ref = NoiseTunnel(Saliency(net)).attribute(x, nt_type="smoothgrad", nt_samples=6, stdevs=0.3, target=target,
                                               abs=False)
    torch.manual_seed(123)  # Captum draws all samples at once, sample-major per row
    noise = torch.normal(0, torch.tensor(0.3).repeat(x.shape[0] * 6, *x.shape[1:]))  # float32, as Captum
    ours = attribute(net, x, target, "smoothgrad", samples=6, noise=noise)
    torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("name,make,shape,targets,layer", [c + ("3",) for c in CASES])
def test_grad_cam_matches_captum(name, make, shape, targets, layer):
    net = make()
    x = _inputs(shape)
    module = dict(net.named_modules())[layer]
    for target in targets:
        for mode in ("nearest", "linear" if name == "conv1d" else "bilinear"):
            ref = LayerAttribution.interpolate(
                LayerGradCam(net, module).attribute(x, target=target, relu_attributions=True), x.shape[2:], mode)
            ours = attribute(net, x, target, "grad_cam", layer=layer, mode=mode)
            torch.testing.assert_close(ours, ref.expand_as(x), atol=TOL, rtol=0)
        ref = GuidedGradCam(net, module).attribute(x, target=target)
        ours = attribute(net, x, target, "guided_grad_cam", layer=layer, mode="nearest")
        torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)
