"""Perturbation methods: occlusion equals Captum's, segment scores equal explicit loops, and all
frames at once equal one frame at a time."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from introspeech.attribution import attribute
from introspeech.attribution.frames import attribute_frames
from introspeech.attribution.perturbation import fixed_segments


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(6, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 4, 3, padding=1)).double().eval()


@pytest.mark.parametrize("window,strides,baseline", [((2, 5), (2, 3), 0.5), ((6, 4), (3, 4), 0.0), ((1, 1), (1, 1), -1.0)])
def test_occlusion_equals_captum(window, strides, baseline):
    captum = pytest.importorskip("captum.attr")
    net = _net()
    x = torch.randn(2, 6, 30, dtype=torch.float64)

    class Frame(nn.Module):  # Captum explains (B, C) outputs: frame 11 of our sequence model
        def forward(self, inp):
            return net(inp)[:, :, 11]

    want = captum.Occlusion(Frame()).attribute(x, sliding_window_shapes=window, strides=strides, target=2,
                                               baselines=baseline)
    got = attribute(net, x, (2, 11), "occlusion", window=window, strides=strides, baseline=baseline, batch=7)
    torch.testing.assert_close(got, want.double(), rtol=1e-6, atol=1e-7)  # Captum divides in float32


def test_occlusion_of_all_frames_equals_one_frame_at_a_time():
    net = _net(1)
    x = torch.randn(1, 6, 40, dtype=torch.float64)
    opts = {"window": (3, 4), "strides": (3, 2), "baseline": 0.1}
    fast = attribute_frames(net, x, "all", "predicted", "occlusion", **opts)
    slow = attribute_frames(net, x, "all", "predicted", "occlusion", engine="loop", **opts)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    part = attribute_frames(net, x, [0, 7, 39], "predicted", "occlusion", **opts)
    torch.testing.assert_close(part, fast[[0, 7, 39]], rtol=0, atol=0)
    with pytest.raises(ValueError, match="not local in time"):  # a patch spreads beyond the receptive field
        attribute_frames(net, x, [0], "predicted", "occlusion", output="windows", **opts)


def _score(net, x, cls, frame):
    with torch.no_grad():
        return net(x)[0, cls, frame]


def test_leave_one_out_segments_equal_an_explicit_loop():
    net = _net(2)
    x = torch.randn(1, 6, 40, dtype=torch.float64)
    segs = [(0, 7), (7, 8), (8, 25), (25, 40)]
    got = attribute(net, x, (1, 20), "segments", segments=segs, baseline=0.3)
    want = torch.zeros_like(x)
    for a, b in segs:
        xa = x.clone()
        xa[..., a:b] = 0.3
        want[..., a:b] = (_score(net, x, 1, 20) - _score(net, xa, 1, 20)) / (6 * (b - a))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got[..., 8:25].sum(), _score(net, x, 1, 20) - _score(
        net, torch.cat([x[..., :8], torch.full_like(x[..., 8:25], 0.3), x[..., 25:]], -1), 1, 20))


def test_random_segment_masks_equal_an_explicit_computation():
    net = _net(3)
    x = torch.randn(1, 6, 30, dtype=torch.float64)
    segs = fixed_segments(30, 7)
    got = attribute(net, x, (0, 14), "segments", window=7, mode="random", samples=50, keep=0.4, seed=5)
    masks = torch.rand(50, len(segs), generator=torch.Generator().manual_seed(5)) < 0.4
    scores = []
    for mk in masks:
        xa = x.clone()
        for k, (a, b) in enumerate(segs):
            if not mk[k]:
                xa[..., a:b] = 0.0
        scores.append(_score(net, xa, 0, 14))
    f = torch.stack(scores)
    for k, (a, b) in enumerate(segs):
        val = f[masks[:, k]].mean() - f[~masks[:, k]].mean()
        torch.testing.assert_close(got[0, 0, a], val / (6 * (b - a)), rtol=1e-10, atol=1e-12)
    fast = attribute_frames(net, x, "all", "predicted", "segments", window=7, mode="random", samples=50, keep=0.4,
                            seed=5)
    slow = attribute_frames(net, x, "all", "predicted", "segments", window=7, mode="random", samples=50, keep=0.4,
                            seed=5, engine="loop")
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)


def test_bad_perturbation_options_are_named():
    net = _net()
    x = torch.randn(1, 6, 30, dtype=torch.float64)
    with pytest.raises(ValueError, match="must fit the input"):
        attribute(net, x, (0, 3), "occlusion", window=(7, 4))
    with pytest.raises(ValueError, match="segment \\(20, 40\\) must lie inside"):
        attribute(net, x, (0, 3), "segments", segments=[(20, 40)])
    with pytest.raises(ValueError, match="mode must be"):
        attribute(net, x, (0, 3), "segments", mode="shuffle")
    with pytest.raises(ValueError, match="occlusion is not local in time"):
        attribute_frames(net, torch.randn(1, 6, 900, dtype=torch.float64), "all", "predicted", "occlusion",
                         max_frames=300)
