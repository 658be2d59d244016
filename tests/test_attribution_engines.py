"""Every all-frames engine (the batched one of models without locality too) equals `attribute`
called once per frame, for every method and option,
on model shapes with strides, dilation, explicit padding layers, grouped convolutions, a BatchNorm
that follows no convolution, and residual blocks. Where an engine cannot honour a method or
model, it says so instead of answering differently."""

import pytest
import torch
from torch import nn

from introspeech.attribution import Composite, Epsilon, Flat, Gamma, GuidedReLU, ZPlus, attribute
from introspeech.attribution.frames import attribute_frames

from .nets import assert_same_state, conv1d_net, functional_net, model_state, padded_net, quartznet_net

SHAPES = {
    "strided-bn": (lambda: conv1d_net(6), 41, "3", True),
    "pads-groups-input-bn": (lambda: padded_net(2), 23, "5", True),
    "residual-separable": (lambda: quartznet_net(1, kernels=(3, 5)), 26, "3.main", True),
    "residual-functional-inplace": (lambda: functional_net(4), 27, "conv2", True),
}


def _second_conv(net):
    return [n for n, m in net.named_modules() if isinstance(m, nn.Conv1d)][1]


def _options(net, cam_layer):
    """(label, method, options): presets, custom composites, every option of every method."""
    second = _second_conv(net)
    custom = Composite(conv=lambda: Gamma(0.5, 1e-6, favour="positive"), dense=lambda: Epsilon(1e-3),
                       first=lambda: Epsilon(1e-4), last=ZPlus, by_name={second: Flat()})
    noise = torch.randn(3, *X_SHAPE[1:], generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 0.3
    return [
        ("gradient", "gradient", {}),
        ("gradient-abs", "gradient", {"abs": True}),
        ("gxi", "gradient_x_input", {}),
        ("ig", "integrated_gradients", {"steps": 4}),
        ("ig-baseline-trapezoid-batch", "integrated_gradients",
         {"steps": 5, "baselines": -0.3, "integration": "riemann_trapezoid", "internal_batch_size": 2}),
        ("ig-left", "integrated_gradients", {"steps": 3, "integration": "riemann_left"}),
        ("smoothgrad", "smoothgrad", {"samples": 3, "stdev": 0.2, "seed": 4}),
        ("smoothgrad-gxi", "smoothgrad", {"samples": 2, "stdev": 0.5, "seed": 1, "inner": "gradient_x_input"}),
        ("smoothgrad-noise", "smoothgrad", {"noise": noise}),
        ("guided", "guided_backprop", {}),
        ("deconvnet", "deconvnet", {}),
        ("lrp-epsilon", "lrp", {"composite": "epsilon"}),
        ("lrp-epsilon-1e-2", "lrp", {"composite": "epsilon", "epsilon": 1e-2}),
        ("lrp-no-canonize", "lrp", {"composite": "epsilon", "canonize": False}),
        ("lrp-plus", "lrp", {"composite": "epsilon-plus"}),
        ("lrp-gamma-box", "lrp", {"composite": "epsilon-gamma-box", "low": -8.0, "high": 8.0, "gamma": 0.5}),
        ("lrp-gamma-positive-no-canonize", "lrp", {"composite": "epsilon-gamma-box", "low": -8.0, "high": 8.0,
                                                   "favour": "positive", "canonize": False}),
        ("lrp-alpha-beta", "lrp", {"composite": "alpha2-beta1"}),
        ("lrp-deep-taylor", "lrp", {"composite": "deep-taylor", "low": -8.0, "high": 8.0}),
        ("lrp-custom", "lrp", {"composite": custom}),
        ("lrp-custom-guided", "lrp", {"composite": Composite(activation=GuidedReLU)}),
        ("deep-taylor-rules", "deep_taylor", {"low": -8.0, "high": 8.0}),
        ("deep-taylor-root", "deep_taylor", {"root": torch.full(X_SHAPE, 0.1, dtype=torch.float64)}),
        ("grad-cam", "grad_cam", {"layer": cam_layer}),
        ("grad-cam-nearest-norelu", "grad_cam", {"layer": cam_layer, "mode": "nearest", "relu": False}),
        ("guided-grad-cam", "guided_grad_cam", {"layer": cam_layer}),
    ]


X_SHAPE = (1, 6, 41)
CASES = [(shape, label) for shape, (make, _, cam, _) in SHAPES.items() for label, _, _ in _options(make(), cam)]


def _x(t):
    return torch.randn(1, 6, t, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _case(shape, label):
    make, t, cam, chain = SHAPES[shape]
    net = make()
    _, method, opts = next(c for c in _options(net, cam) if c[0] == label)
    x = _x(t)
    if "noise" in opts:
        opts = {**opts, "noise": opts["noise"][..., :t]}
    if isinstance(opts.get("root"), torch.Tensor):
        opts = {**opts, "root": opts["root"][..., :t]}
    return net, x, method, opts, chain


@pytest.mark.parametrize("shape,label", CASES)
def test_every_engine_equals_the_per_frame_call(shape, label):
    net, x, method, opts, chain = _case(shape, label)
    state = model_state(net)
    with torch.no_grad():
        classes = net(x)[0].argmax(0)
    n = classes.shape[0]
    want = torch.stack([attribute(net, x, (int(classes[t]), t), method, **opts)[0] for t in range(n)])
    engines = ["auto", "colour", "loop", "batched"] + (["cone"] if chain else [])
    local = method not in ("grad_cam", "guided_grad_cam")
    for engine in engines:
        if engine in ("cone", "batched") and not local:
            continue
        got = attribute_frames(net, x, "all", "predicted", method, chunk=3, engine=engine, **opts)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7, msg=lambda m, e=engine: f"{e}: {m}")
    assert_same_state(state, model_state(net))


class Gated(nn.Module):
    """An operation the cone engine does not follow (a product of branches)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(6, 4, 3, padding=1), nn.Conv1d(6, 4, 3, padding=1)

    def forward(self, x):
        return self.a(x) * torch.sigmoid(self.b(x))


def test_cone_engine_says_why_it_cannot_run_a_model_and_auto_falls_back():
    torch.manual_seed(0)
    net = Gated().double().eval()
    x = _x(20)
    with pytest.raises(ValueError, match="engine='cone' cannot run this: operation 'sigmoid' between modules"):
        attribute_frames(net, x, "all", "predicted", "gradient", engine="cone")
    got = attribute_frames(net, x, "all", "predicted", "gradient")
    want = attribute_frames(net, x, "all", "predicted", "gradient", engine="loop")
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_searched_root_is_not_shared_between_frames():
    """Deep Taylor's searched root differs per frame: auto runs the loop, the sharing engines refuse."""
    net, x, *_ = _case("strided-bn", "gradient")
    frames = [0, 5, 19]
    with torch.no_grad():
        classes = net(x)[0].argmax(0)
    got = attribute_frames(net, x, frames, "predicted", "deep_taylor", root="search")
    want = torch.stack([attribute(net, x, (int(classes[t]), t), "deep_taylor", root="search")[0] for t in frames])
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)
    for engine in ("cone", "colour"):
        with pytest.raises(ValueError, match=r"root='search'.*not linear in the target"):
            attribute_frames(net, x, frames, "predicted", "deep_taylor", engine=engine, root="search")


def test_unknown_options_and_wrong_types_name_the_option():
    net, x, *_ = _case("strided-bn", "gradient")
    with pytest.raises(TypeError, match=r"method 'integrated_gradients' has no option\(s\) \['step'\]"):
        attribute_frames(net, x, "all", "predicted", "integrated_gradients", step=4)
    with pytest.raises(TypeError, match="option 'steps' of integrated_gradients must be int"):
        attribute(net, x, (0, 0), "integrated_gradients", steps=4.5)
    with pytest.raises(TypeError, match="option 'canonize' of lrp must be bool"):
        attribute(net, x, (0, 0), "lrp", canonize="no")


def test_methods_say_what_context_they_need():
    from introspeech.attribution import METHODS, method

    ctx = {"layer": "3", "low": -1.0, "high": 1.0}
    assert method("grad_cam").with_context({}, **ctx) == {"layer": "3"}
    assert method("lrp").with_context({"composite": "epsilon-gamma-box"}, **ctx) == {
        "composite": "epsilon-gamma-box", "low": -1.0, "high": 1.0}
    assert method("lrp").with_context({"composite": "epsilon"}, **ctx) == {"composite": "epsilon"}
    assert method("deep_taylor").with_context({}, **ctx) == {"low": -1.0, "high": 1.0}
    assert method("deep_taylor").with_context({"root": "search"}, **ctx) == {"root": "search"}
    assert method("gradient").with_context({}, **ctx) == {}
    assert set(METHODS) == {"gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop",
                            "deconvnet", "lrp", "deep_taylor", "grad_cam", "guided_grad_cam", "occlusion", "segments"}


def test_readme_method_table_is_generated_from_the_definitions():
    from pathlib import Path

    from introspeech.attribution.definitions import method_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert method_table() in readme


def test_explicit_classes_must_match_the_output_frames():
    net, x, *_ = _case("strided-bn", "gradient")
    n = net(x).shape[-1]
    for engine in ("cone", "colour", "auto"):
        with pytest.raises(ValueError, match="one per output frame"):
            attribute_frames(net, x, [0], torch.zeros(n + 3, dtype=torch.long), "gradient", engine=engine)


class LaterInPlace(nn.Module):
    """A tensor read by an addition and changed in place afterwards (the cone engine must keep what
    the addition read)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(6, 8, 3, padding=1), nn.Conv1d(6, 8, 5, padding=2)
        self.head = nn.Conv1d(8, 5, 1)

    def forward(self, x):
        y = self.a(x)
        z = y + self.b(x)
        y.relu_()
        return self.head(z + y)


@pytest.mark.parametrize("method,opts", [("gradient", {}), ("lrp", {"composite": "epsilon"})])
def test_cone_engine_keeps_values_read_before_an_in_place_change(method, opts):
    torch.manual_seed(2)
    net = LaterInPlace().double().eval()
    x = _x(21)
    want = attribute_frames(net, x, "all", "predicted", method, engine="loop", **opts)
    got = attribute_frames(net, x, "all", "predicted", method, engine="cone", **opts)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def test_one_position_transposed_convolution_equals_conv_transpose1d():
    """The cone engine's matrix-product path for one-position signals (the top of every cone)."""
    import torch.nn.functional as F

    from introspeech.attribution.cone import _transposed

    g = torch.Generator().manual_seed(0)
    for n, c_out, c_in, k, stride, dilation, groups in [(5, 7, 3, 1, 1, 1, 1), (4, 6, 5, 7, 2, 1, 1),
                                                        (3, 8, 4, 5, 1, 2, 1), (2, 8, 4, 3, 1, 1, 2)]:
        r = torch.randn(n, c_out, 1, generator=g)
        w = torch.randn(c_out, c_in // groups, k, generator=g)
        torch.testing.assert_close(_transposed(r, w, stride, dilation, groups),
                                   F.conv_transpose1d(r, w, stride=stride, dilation=dilation, groups=groups))
    r = torch.randn(3, 6, 4, generator=g)  # wider signals take conv_transpose1d itself
    w = torch.randn(6, 2, 3, generator=g)
    torch.testing.assert_close(_transposed(r, w, 1, 1, 1), F.conv_transpose1d(r, w))
