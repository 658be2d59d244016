"""Perturbation methods: what the score loses when part of the input is replaced by a baseline.

- ``occlusion``: time–frequency patches slid over the input (Zeiler & Fergus 2014; the same
  windows, strides and averaging as Captum's ``Occlusion``): a feature's attribution is the mean,
  over the windows that cover it, of f(x) − f(x with that window replaced by the baseline);
- ``segments``: time spans (phones, words or fixed windows; SPES and ferret's SpeechXAI explain
  speech models this way) scored by leaving each out, or by random masking (the mean score with
  the span kept minus with it removed, over seeded Bernoulli masks); a span's score is spread
  evenly over its elements, so its map has the input's shape and sums to the span's score.

Each perturbed input is one forward pass that changes every output frame at once, so
`attribute_frames` explains all frames of an utterance with the same passes as one frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from .targets import output_gradient


def _baseline(x: torch.Tensor, baseline) -> torch.Tensor:
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    return b.expand_as(x) if b.dim() < x.dim() or b.shape[0] == 1 else b


def occlusion_windows(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]
                      ) -> Iterator[tuple[slice, ...]]:
    """Window positions over the non-batch axes: ``ceil((n − w) / s) + 1`` per axis, the last one cut
    at the edge (Captum's placement)."""
    if len(window) != len(shape) or len(strides) != len(shape):
        raise ValueError(f"occlusion window {window} and strides {strides} need one entry per input axis {shape}")
    if any(w < 1 or w > n for w, n in zip(window, shape)) or any(s < 1 for s in strides):
        raise ValueError(f"occlusion window {window} must fit the input axes {shape}, strides ≥ 1")
    counts = [math.ceil((n - w) / s) + 1 for n, w, s in zip(shape, window, strides)]
    for k in range(math.prod(counts)):
        idx, rest = [], k
        for c in counts:
            idx.append(rest % c)
            rest //= c
        yield tuple(slice(i * s, min(i * s + w, n)) for i, s, w, n in zip(idx, strides, window, shape))


def _forward(model: nn.Module, inputs: list[torch.Tensor], batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(torch.cat(inputs[k:k + batch])) for k in range(0, len(inputs), batch)])


def _selected(out: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """Per output frame (or per row) score that the selector picks: ``(B, T)`` or ``(B,)``."""
    prod = out * selector
    return prod.sum(1) if prod.dim() == 3 else prod.flatten(1).sum(1)


def occlusion_maps(model: nn.Module, x: torch.Tensor, selector: torch.Tensor, window: tuple[int, ...],
                   strides: tuple[int, ...] | None = None, baseline=0.0, batch: int = 32,
                   per_frame: bool = False) -> torch.Tensor:
    """Occlusion maps of ``x`` ``(B, ...)`` for the scores ``selector`` picks from the output.
    ``per_frame`` (sequence outputs, B = 1): one map per output frame ``(T_out, ...)`` from the same
    passes (the score of frame t is ``selector[0, :, t]`` · output)."""
    strides = tuple(strides or window)
    base = _baseline(x, baseline)
    with torch.no_grad():
        out = model(x)
    f0 = _selected(out, selector) if per_frame else (out * selector).flatten(1).sum(1)
    rows = f0.shape[-1] if per_frame else x.shape[0]
    total = x.new_zeros(rows, *x.shape[1:]) if per_frame else torch.zeros_like(x)
    counts = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
    wins = list(occlusion_windows(tuple(x.shape[1:]), tuple(window), strides))
    for k in range(0, len(wins), batch):
        part = wins[k:k + batch]
        ablated = []
        for w in part:
            xa = x.clone()
            xa[(slice(None),) + w] = base[(slice(None),) + w]
            ablated.append(xa)
        outs = _forward(model, ablated, batch).reshape(len(part), *out.shape)
        for w, o in zip(part, outs):
            f = _selected(o, selector) if per_frame else (o * selector).flatten(1).sum(1)
            diff = (f0 - f)[0] if per_frame else f0 - f
            total[(slice(None),) + w] += diff.reshape(-1, *([1] * (x.dim() - 1)))
            counts[w] += 1
    return total / counts.clamp_min(1)


def fixed_segments(n_frames: int, window: int) -> list[tuple[int, int]]:
    """Consecutive time spans of ``window`` input frames (the last one shorter)."""
    if window < 1:
        raise ValueError(f"segment window must be ≥ 1 frame, got {window}")
    return [(a, min(a + window, n_frames)) for a in range(0, n_frames, window)]


def _check_segments(segments, n_frames: int) -> list[tuple[int, int]]:
    out = []
    for s in segments:
        a, b = int(s[0]), int(s[1])
        if not 0 <= a < b <= n_frames:
            raise ValueError(f"segment {(a, b)} must lie inside the input's {n_frames} frames and not be empty")
        out.append((a, b))
    if not out:
        raise ValueError("segments: give at least one time span")
    return out


def segment_scores(model: nn.Module, x: torch.Tensor, selector: torch.Tensor, segments: list[tuple[int, int]],
                   mode: str = "leave_one_out", baseline=0.0, samples: int = 200, keep: float = 0.5,
                   seed: int = 0, batch: int = 32, per_frame: bool = False) -> torch.Tensor:
    """Score of each time span ``(rows, K)``: rows are the batch (or, ``per_frame``, output frames)."""
    if mode not in ("leave_one_out", "random"):
        raise ValueError(f"segments mode must be 'leave_one_out' or 'random', not {mode!r}")
    base = _baseline(x, baseline)
    segs = _check_segments(segments, x.shape[-1])
    with torch.no_grad():
        out = model(x)

    def score(o):
        return _selected(o, selector)[0] if per_frame else (o * selector).flatten(1).sum(1)

    def masked(keep_mask: torch.Tensor) -> torch.Tensor:
        xa = x.clone()
        for k, (a, b) in enumerate(segs):
            if not keep_mask[k]:
                xa[..., a:b] = base[..., a:b]
        return xa

    if mode == "leave_one_out":
        masks = ~torch.eye(len(segs), dtype=torch.bool)
    else:
        if not 0 < keep < 1 or samples < 2:
            raise ValueError("random segment masks need 0 < keep < 1 and samples ≥ 2")
        gen = torch.Generator().manual_seed(seed)
        masks = torch.rand(samples, len(segs), generator=gen) < keep
    outs = _forward(model, [masked(mk) for mk in masks], batch).reshape(len(masks), *out.shape)
    f = torch.stack([score(o) for o in outs])  # (masks, rows)
    if mode == "leave_one_out":
        return (score(out)[None, :] - f).T  # (rows, K)
    kept = masks.to(x.dtype)  # (masks, K)
    n_kept, n_removed = kept.sum(0).clamp_min(1), (1 - kept).sum(0).clamp_min(1)
    return (f.T @ kept) / n_kept - (f.T @ (1 - kept)) / n_removed


def spread(scores: torch.Tensor, segments: list[tuple[int, int]], shape: tuple[int, ...]) -> torch.Tensor:
    """Maps ``(rows, *shape)`` with each span's score spread evenly over its elements."""
    maps = scores.new_zeros(scores.shape[0], *shape)
    per_frame = math.prod(shape[:-1])
    for k, (a, b) in enumerate(segments):
        maps[..., a:b] = (scores[:, k] / (per_frame * (b - a))).reshape(-1, *([1] * len(shape)))
    return maps


def occlusion(model: nn.Module, x: torch.Tensor, target, window: tuple = (8, 10), strides: tuple | None = None,
              baseline=0.0, batch: int = 32) -> torch.Tensor:
    """`attribute`'s occlusion (see the module docstring); ``window`` / ``strides`` over the
    non-batch axes (mel bands, frames for speech features)."""
    with torch.no_grad():
        sel = output_gradient(model(x), target)
    return occlusion_maps(model, x, sel, _window(window, x), strides and tuple(strides), baseline, batch)


def segments(model: nn.Module, x: torch.Tensor, target, segments: list | None = None, window: int = 10,
             mode: str = "leave_one_out", baseline=0.0, samples: int = 200, keep: float = 0.5, seed: int = 0,
             batch: int = 32) -> torch.Tensor:
    """`attribute`'s segment attribution (see the module docstring); ``segments``: ``(start, end)``
    input frames, default consecutive spans of ``window`` frames."""
    with torch.no_grad():
        sel = output_gradient(model(x), target)
    segs = _check_segments(segments, x.shape[-1]) if segments is not None else fixed_segments(x.shape[-1], window)
    s = segment_scores(model, x, sel, segs, mode, baseline, samples, keep, seed, batch)
    return spread(s, segs, tuple(x.shape[1:]))


def _window(window: tuple, x: torch.Tensor) -> tuple[int, ...]:
    """A window over the non-batch axes; a shorter one covers the leading axes whole (``(10,)`` on
    ``(B, mel, T)`` inputs: every band, 10 frames)."""
    window = tuple(int(w) for w in window)
    shape = tuple(x.shape[1:])
    return tuple(shape[: len(shape) - len(window)]) + window if len(window) < len(shape) else window


def frames_occlusion(model: nn.Module, x: torch.Tensor, todo: list[int], cls: torch.Tensor, window: tuple = (8, 10),
                     strides: tuple | None = None, baseline=0.0, batch: int = 32) -> torch.Tensor:
    """`attribute_frames` for occlusion: every requested frame's map from one set of passes."""
    with torch.no_grad():
        out = model(x)
    sel = torch.zeros_like(out)
    sel[0, cls, torch.arange(out.shape[-1])] = 1.0
    maps = occlusion_maps(model, x, sel, _window(window, x), strides and tuple(strides), baseline, batch, per_frame=True)
    return maps[todo]


def frames_segments(model: nn.Module, x: torch.Tensor, todo: list[int], cls: torch.Tensor, segments: list | None = None,
                    window: int = 10, mode: str = "leave_one_out", baseline=0.0, samples: int = 200, keep: float = 0.5,
                    seed: int = 0, batch: int = 32) -> torch.Tensor:
    """`attribute_frames` for segment attribution: every requested frame's map from one set of passes."""
    with torch.no_grad():
        out = model(x)
    sel = torch.zeros_like(out)
    sel[0, cls, torch.arange(out.shape[-1])] = 1.0
    segs = _check_segments(segments, x.shape[-1]) if segments is not None else fixed_segments(x.shape[-1], window)
    s = segment_scores(model, x, sel, segs, mode, baseline, samples, keep, seed, batch, per_frame=True)
    return spread(s[todo], segs, tuple(x.shape[1:]))
