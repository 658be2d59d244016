"""How the optimized input is parameterized: directly, or in a decorrelated Fourier basis, and kept
inside the data's range by a scaled tanh.

Fourier: the parameters are the real-FFT coefficients of the (Mel × time) or (height × width) input,
scaled by 1 / frequency^decay, so gradient steps move low frequencies as easily as high ones
(Olah et al. 2017); the inverse FFT gives the input.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Bounded(nn.Module):
    """Maps an unbounded tensor into [low, high] (per feature row) with a scaled tanh."""

    def __init__(self, low: torch.Tensor | float, high: torch.Tensor | float):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * (torch.tanh(raw) + 1) / 2


class Direct(nn.Module):
    """The input itself (before the bound) is the parameter."""

    def __init__(self, shape: tuple[int, ...], scale: float = 0.01, generator: torch.Generator | None = None):
        super().__init__()
        self.raw = nn.Parameter(torch.randn(shape, generator=generator) * scale)

    def forward(self) -> torch.Tensor:
        return self.raw


class Fourier(nn.Module):
    """Decorrelated 2-D Fourier parameterization of the last two axes."""

    def __init__(self, shape: tuple[int, ...], decay: float = 1.0, scale: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.shape = tuple(shape)
        h, w = shape[-2], shape[-1]
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freq = torch.sqrt(fx ** 2 + fy ** 2)
        self.register_buffer("weight", 1.0 / torch.clamp(freq, min=1.0 / max(h, w)) ** decay)
        spec = tuple(shape[:-1]) + (w // 2 + 1, 2)
        self.coef = nn.Parameter(torch.randn(spec, generator=generator) * scale)
        self.norm = math.sqrt(h * w)

    def forward(self) -> torch.Tensor:
        c = torch.view_as_complex(self.coef) * self.weight
        return torch.fft.irfft2(c, s=self.shape[-2:]) * self.norm / self.weight.mean()
