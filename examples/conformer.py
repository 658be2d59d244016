"""A Conformer-CTC recognizer (Gulati et al. 2020), written as users write one: convolutional
subsampling, Conformer blocks (half-step feed-forward modules with SiLU, ``nn.MultiheadAttention``,
a convolution module with pointwise conv + GLU, depthwise conv, BatchNorm, SiLU and
squeeze-excitation), a linear CTC head. For ``--model-factory examples.conformer:conformer``.

Relative positions are left out (the attention sees content only); everything else is the
standard block. Presets: ``tiny`` (tests, seconds), ``small`` (≈ 5 M parameters, the benchmark).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm, self.up, self.act, self.down = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d)

    def forward(self, x):
        return x + 0.5 * self.down(self.act(self.up(self.norm(x))))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, BatchNorm, SiLU, squeeze-excitation, pointwise conv."""

    def __init__(self, d: int, k: int = 5):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1, self.glu = nn.Conv1d(d, 2 * d, 1), nn.GLU(dim=1)
        self.dw, self.bn, self.act = nn.Conv1d(d, d, k, padding=k // 2, groups=d), nn.BatchNorm1d(d), nn.SiLU()
        self.se_down, self.se_up = nn.Linear(d, d // 2), nn.Linear(d // 2, d)
        self.pw2 = nn.Conv1d(d, d, 1)

    def forward(self, x):  # x: (B, T, d)
        y = self.norm(x).transpose(1, 2)
        y = self.act(self.bn(self.dw(self.glu(self.pw1(y)))))
        gate = torch.sigmoid(self.se_up(F.silu(self.se_down(y.mean(-1)))))  # squeeze-excitation
        y = self.pw2(y * gate.unsqueeze(-1))
        return x + y.transpose(1, 2)


class ConformerBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ff1, self.ff2 = FeedForward(d), FeedForward(d)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.conv = ConvModule(d)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, x):
        x = self.ff1(x)
        y = self.attn_norm(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = self.conv(x)
        return self.out_norm(self.ff2(x))


class ConformerCTC(nn.Module):
    """(B, n_mels, T) → (B, classes, T/4): conv subsampling, Conformer blocks, a linear CTC head."""

    def __init__(self, n_mels: int = 6, d: int = 8, heads: int = 2, layers: int = 2, classes: int = 5):
        super().__init__()
        self.subsample = nn.Sequential(nn.Conv1d(n_mels, d, 3, 2, 1), nn.ReLU(), nn.Conv1d(d, d, 3, 2, 1), nn.ReLU())
        self.blocks = nn.ModuleList([ConformerBlock(d, heads) for _ in range(layers)])
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.subsample(x).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(x).transpose(1, 2)


PRESETS = {"tiny": dict(d=8, heads=2, layers=2), "small": dict(d=176, heads=4, layers=10)}


def conformer(preset: str = "tiny", n_mels: int = 40, classes: int = 29) -> ConformerCTC:
    """A Conformer-CTC of a preset size over ``n_mels`` features and ``classes`` symbols (blank last)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return ConformerCTC(n_mels=n_mels, classes=classes, **PRESETS[preset])
