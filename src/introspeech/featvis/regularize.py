"""Regularizers of feature visualization (Olah et al. 2017), each optional.

Frequency penalization: total variation with separate weights along time (last axis) and
frequency/height (second to last), L1 and L2 towards the data mean (0 for z-normalized input), and
a Gaussian blur of the input after each step. Transformation robustness: the objective is taken on a
randomly transformed input each step — time jitter, Mel-bin shift and time stretch for spectrograms;
jitter, scale and rotation for images — so the result cannot rely on exact positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Penalties:
    """Weights of the penalties added to −objective (0 = off)."""

    tv_time: float = 0.0
    tv_freq: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    blur: float = 0.0  # Gaussian σ (in bins/pixels) applied to the input after each step


def penalty(x: torch.Tensor, p: Penalties) -> torch.Tensor:
    """Sum of the enabled penalties for input ``x`` ``(B, …, H, W)`` (means over elements)."""
    total = x.new_zeros(())
    if p.tv_time:
        total = total + p.tv_time * (x[..., 1:] - x[..., :-1]).abs().mean()
    if p.tv_freq:
        total = total + p.tv_freq * (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    if p.l1:
        total = total + p.l1 * x.abs().mean()
    if p.l2:
        total = total + p.l2 * (x ** 2).mean()
    return total


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of the last two axes (zero padding reflected)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(2 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    shape = x.shape
    y = x.reshape(-1, 1, shape[-2], shape[-1])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(shape)


@dataclass(frozen=True)
class Robustness:
    """Random transformations applied before the model sees the input (0 = off).

    Spectrograms: ``jitter`` frames of circular time shift, ``shift`` Mel bins of frequency shift
    (zero-filled), ``stretch`` relative time stretch (±). Images: ``jitter`` pixels in both axes,
    ``scale`` (±, relative), ``rotate`` degrees (±)."""

    jitter: int = 0
    shift: int = 0
    stretch: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0


def _shift_axis(x: torch.Tensor, k: int, axis: int) -> torch.Tensor:
    if k == 0:
        return x
    y = torch.roll(x, k, dims=axis)
    idx = [slice(None)] * x.dim()
    idx[axis] = slice(0, k) if k > 0 else slice(k, None)
    y = y.clone()
    y[tuple(idx)] = 0
    return y


def transform(x: torch.Tensor, r: Robustness, g: torch.Generator, image: bool) -> torch.Tensor:
    """One random draw of the transformations (same draw for the whole batch)."""
    def draw(n: int) -> int:
        return int(torch.randint(-n, n + 1, (1,), generator=g)) if n else 0

    def uniform(a: float) -> float:
        return float((torch.rand(1, generator=g) * 2 - 1) * a) if a else 0.0

    if image:
        if r.jitter:
            x = torch.roll(x, (draw(r.jitter), draw(r.jitter)), dims=(-2, -1))
        if r.scale or r.rotate:
            s, a = 1 + uniform(r.scale), math.radians(uniform(r.rotate))
            theta = torch.tensor([[math.cos(a) / s, -math.sin(a) / s, 0.0], [math.sin(a) / s, math.cos(a) / s, 0.0]],
                                 dtype=x.dtype).expand(x.shape[0], 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
        return x
    if r.jitter:
        x = torch.roll(x, draw(r.jitter), dims=-1)
    if r.shift:
        x = _shift_axis(x, draw(r.shift), x.dim() - 2)
    if r.stretch:
        t = x.shape[-1]
        n = max(2, int(round(t * (1 + uniform(r.stretch)))))
        y = F.interpolate(x.reshape(x.shape[0], -1, t), size=n, mode="linear", align_corners=False)
        y = F.pad(y, (0, max(0, t - n)))[..., :t]
        x = y.reshape(x.shape)
    return x
