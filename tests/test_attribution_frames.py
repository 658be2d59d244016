"""attribute_frames equals the per-frame computation for every method (first/last frames, strides)."""

import pytest
import torch

from introspeech.asr.model import build_model, geometry
from introspeech.attribution import attribute
from introspeech.attribution.frames import FrameGeometry, attribute_frames, chain_geometry

from .nets import assert_same_state, conv1d_net, model_state

OPTIONS = {
    "gradient": {}, "gradient_x_input": {}, "guided_backprop": {}, "deconvnet": {},
    "integrated_gradients": {"steps": 6},
    "smoothgrad": {"samples": 3, "stdev": 0.2, "seed": 4},
    "lrp": {"composite": "epsilon-gamma-box", "low": -8.0, "high": 8.0},
    "deep_taylor": {"low": -8.0, "high": 8.0},
    "grad_cam": {"layer": "3"},
    "guided_grad_cam": {"layer": "3"},
}


def _per_frame(net, x, method, opts, frames, classes):
    maps = []
    for t in frames:
        o = dict(opts)
        if method == "smoothgrad":  # the same noise for every frame, as attribute_frames uses
            gen = torch.Generator().manual_seed(o.pop("seed"))
            o["noise"] = torch.randn((o["samples"], *x.shape[1:]), generator=gen, dtype=x.dtype) * o.pop("stdev")
        maps.append(attribute(net, x, (int(classes[t]), t), method, **o)[0])
    return torch.stack(maps)


@pytest.mark.parametrize("engine", ["colour", "auto"])
@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_frames_equal_per_frame_loop(method, engine):
    net = conv1d_net(6)  # stride 2, BatchNorm
    x = torch.randn(1, 6, 41, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    state = model_state(net)
    with torch.no_grad():
        classes = net(x)[0].argmax(0)
    n_out = classes.shape[0]
    got = attribute_frames(net, x, "all", "predicted", method, chunk=3, engine=engine, **OPTIONS[method])
    assert got.shape == (n_out, *x.shape[1:])
    want = _per_frame(net, x, method, OPTIONS[method], range(n_out), classes)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
    assert_same_state(state, model_state(net))


def test_geometry_of_chain_matches_wav2letter_geometry():
    model = build_model("default").eval()
    g = geometry(model.config)["output"]
    assert chain_geometry(model, torch.zeros(1, 40, 50)) == FrameGeometry(g.rf, g.stride, g.offset)


@pytest.mark.parametrize("engine", ["colour", "cone"])
@pytest.mark.parametrize("method", ["gradient", "lrp", "guided_backprop", "integrated_gradients", "smoothgrad"])
def test_frames_on_tiny_wav2letter_subset_of_frames(method, engine):
    torch.manual_seed(0)
    model = build_model("tiny").double().eval()
    x = torch.randn(1, 40, 60, dtype=torch.float64)
    opts = {"lrp": {"composite": "epsilon-plus"}, "integrated_gradients": {"steps": 4},
            "smoothgrad": {"samples": 2, "stdev": 0.5, "seed": 1}}.get(method, {})
    frames = [0, 1, 7, 14, 29]  # first and last frames included
    classes = torch.arange(30) % 29
    got = attribute_frames(model, x, frames, classes, method, chunk=2, engine=engine, **opts)
    want = _per_frame(model, x, method, opts, frames, classes)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("method", ["gradient", "lrp"])
def test_chain_engine_with_even_kernels_and_padding_layers(method):
    """The paper layout's even kernels need ConstantPad1d layers: the chain engine handles them."""
    from introspeech.asr.model import LayerSpec, ModelConfig

    cfg = ModelConfig("paper", 8, (LayerSpec(6, 8, 2), LayerSpec(6, 4), LayerSpec(8, 1)))
    torch.manual_seed(1)
    model = build_model(cfg).double().eval()
    assert any(isinstance(m, torch.nn.ConstantPad1d) for m in model.modules())
    x = torch.randn(1, 8, 33, dtype=torch.float64)
    classes = torch.arange(17) % 29
    got = attribute_frames(model, x, "all", classes, method, engine="cone", composite="epsilon")  \
        if method == "lrp" else attribute_frames(model, x, "all", classes, method, engine="cone")
    opts = {"composite": "epsilon"} if method == "lrp" else {}
    want = _per_frame(model, x, method, opts, range(17), classes)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)
