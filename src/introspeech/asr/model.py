"""Wav2Letter-style recognizer: Conv1d → BatchNorm1d → ReLU blocks, then a 1×1 output layer.

Layers are named ``layer1`` … ``layerN`` and ``output`` (module paths ``layers.layer9``,
``layers.layer9.relu`` for the post-ReLU activation, ``layers.output`` for the scores), so that
tools can say "layer 9". `geometry` gives every layer's exact receptive field, stride and offset.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..graph import FrameGeometry
from ..text import N_SYMBOLS


@dataclass(frozen=True)
class LayerSpec:
    """One convolution: output channels, kernel, stride, dilation (``same`` padding)."""

    channels: int
    kernel: int
    stride: int = 1
    dilation: int = 1

    @property
    def padding(self) -> tuple[int, int]:
        """(left, right) zero padding: output frame t is centred on input frame t·stride."""
        total = self.dilation * (self.kernel - 1)
        return total // 2, total - total // 2


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a recognizer; stored with every checkpoint."""

    preset: str
    n_mels: int
    layers: tuple[LayerSpec, ...]
    n_symbols: int = N_SYMBOLS
    batchnorm: bool = True
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["layers"] = tuple(LayerSpec(**x) for x in d["layers"])
        return cls(**d)

    @property
    def layer_names(self) -> list[str]:
        return [f"layer{i + 1}" for i in range(len(self.layers))] + ["output"]


def _preset(name: str, n_mels: int, first: LayerSpec, mid: LayerSpec, n_mid: int, wide: LayerSpec,
            wide_ch: int) -> ModelConfig:
    layers = (first,) + (mid,) * n_mid + (wide, LayerSpec(wide_ch, 1))
    return ModelConfig(name, n_mels, layers)


PRESETS: dict[str, ModelConfig] = {
    # CPU-trainable default (~2.4 M parameters): 40 Mel bands, 10 ms hop.
    "default": _preset("default", 40, LayerSpec(160, 11, 2), LayerSpec(160, 7), 7, LayerSpec(384, 15), 384),
    # speechless / Kunze et al. 2017 layout, with BatchNorm as in the slides: 128 Mel bands, 8 ms hop.
    "paper": _preset("paper", 128, LayerSpec(250, 48, 2), LayerSpec(250, 7), 7, LayerSpec(2000, 32), 2000),
    # tiny model for tests
    "tiny": _preset("tiny", 40, LayerSpec(16, 5, 2), LayerSpec(16, 3), 2, LayerSpec(24, 5), 24),
}
FEATURE_PRESET = {"default": "default", "paper": "paper", "tiny": "default"}


def _block(spec: LayerSpec, in_ch: int, batchnorm: bool, dropout: float) -> nn.Sequential:
    left, right = spec.padding
    parts: list[tuple[str, nn.Module]] = []
    if left != right:
        parts.append(("pad", nn.ConstantPad1d((left, right), 0.0)))
        pad = 0
    else:
        pad = left
    parts.append(("conv", nn.Conv1d(in_ch, spec.channels, spec.kernel, spec.stride, pad, spec.dilation,
                                    bias=not batchnorm)))
    if batchnorm:
        parts.append(("bn", nn.BatchNorm1d(spec.channels)))
    parts.append(("relu", nn.ReLU()))
    if dropout > 0:
        parts.append(("dropout", nn.Dropout(dropout)))
    return nn.Sequential(OrderedDict(parts))


class Wav2Letter(nn.Module):
    """Features ``(batch, n_mels, time)`` → letter scores ``(batch, n_symbols, frames)`` (logits)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        blocks: list[tuple[str, nn.Module]] = []
        ch = config.n_mels
        for name, spec in zip(config.layer_names, config.layers):
            blocks.append((name, _block(spec, ch, config.batchnorm, config.dropout)))
            ch = spec.channels
        blocks.append(("output", nn.Conv1d(ch, config.n_symbols, 1)))
        self.layers = nn.Sequential(OrderedDict(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.config.n_mels:
            raise ValueError(f"expected features (batch, {self.config.n_mels}, time), got {tuple(x.shape)}")
        return self.layers(x)

    def output_length(self, n_frames: int | torch.Tensor) -> int | torch.Tensor:
        """Number of output frames for ``n_frames`` input frames."""
        return output_length(self.config, n_frames)


def output_length(config: ModelConfig, n_frames):
    """Output frames for an input of ``n_frames`` frames (int or integer tensor)."""
    n = n_frames
    for spec in config.layers:
        left, right = spec.padding
        n = (n + left + right - spec.dilation * (spec.kernel - 1) - 1) // spec.stride + 1
    return n


Geometry = FrameGeometry
"""Where a layer's frame t looks in the input (the one geometry type, `introspeech.graph`)."""


def geometry(config: ModelConfig) -> dict[str, Geometry]:
    """Exact receptive field, stride and offset (in input frames) of every named layer's frames."""
    rf, stride, offset = 1, 1, 0
    out: dict[str, Geometry] = {}
    for name, spec in zip(config.layer_names, config.layers):
        left, _ = spec.padding
        offset -= left * stride
        rf += spec.dilation * (spec.kernel - 1) * stride
        stride *= spec.stride
        out[name] = Geometry(rf, stride, offset)
    out["output"] = Geometry(rf, stride, offset)
    return out


def build_model(preset: str | ModelConfig = "default", seed: int | None = None) -> Wav2Letter:
    """A fresh model of a preset (or config); ``seed`` makes the initialization reproducible."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return Wav2Letter(preset)
    return Wav2Letter(preset)
