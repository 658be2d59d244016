"""Streaming sums for Neuron Activation Profiles and letter/phoneme patterns.

Everything is a float64 sum or count of fixed shape, so memory does not grow with the corpus and two
partial results merge by addition. Sums run in a fixed order (kernels.py: frame by frame), so the
same utterances in the same order give bit-identical arrays in any process; torch's float32 forward
depends on its thread count, which is therefore a setting.

Array names (axes in brackets)::

    nap/LAYER/KIND/sum            [group, channel]         activations over the group's frames
    nap/LAYER/KIND/count          [group]
    nap/LAYER/KIND/sumsq          [channel]                squares over all frames with a group
    wnap/LAYER/KIND/sum           [group, time, channel]   windows around each occurrence
    wnap/LAYER/KIND/count         [group, time]
    anap/LAYER/letters/sum, count                         gradient-adjusted windows (optional)
    pattern/KIND/ALIGN/sum        [group, time, mel]       input windows; ALIGN: aligned | nominal
    pattern/KIND/ALIGN/count      [group, time]
    shift/hist                    [shift]                  aligned − nominal centre (input frames)
    totals                        utterances, input frames, letter and phoneme occurrences
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..asr.model import Geometry
from ..models.description import ModelDescription, describe
from .labels import GROUPS

KINDS = ("letters", "phonemes")


@dataclass(frozen=True)
class ProfileSettings:
    """What to accumulate (stored with the results; a resumed run must use the same)."""

    groups: tuple[str, ...] = KINDS
    letters_from: str = "reference"  # reference (forced alignment) | prediction (greedy CTC path)
    nap_window: int = 5  # layer frames each side of an occurrence (windowed NAPs; 5 = ±100 ms at a 20 ms stride; 0 = none)
    pattern_window: int = 40  # input frames each side (letter/phoneme patterns)
    relevance: str = "gradient"  # attribution method that aligns predictions; "" = nominal only
    align_by: str = "max"  # max | centre  (of the summed |relevance| over time)
    gradient_adjusted: bool = False
    threads: int = 1  # torch threads for the forward pass (results depend on it bit-wise)

    def __post_init__(self) -> None:
        bad = [g for g in self.groups if g not in KINDS]
        if bad or not self.groups:
            raise ValueError(f"groups must be some of {', '.join(KINDS)}, got {','.join(self.groups) or 'none'}")
        if self.letters_from not in ("reference", "prediction"):
            raise ValueError(f"letters_from must be 'reference' or 'prediction', not {self.letters_from!r}")
        if self.align_by not in ("max", "centre"):
            raise ValueError(f"align_by must be 'max' or 'centre', not {self.align_by!r}")
        if self.nap_window < 0 or self.pattern_window < 0 or self.threads < 1:
            raise ValueError("nap_window and pattern_window must be ≥ 0 and threads ≥ 1")
        if self.gradient_adjusted and not self.nap_window:
            raise ValueError("gradient-adjusted NAPs are windowed: they need nap_window > 0")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ProfileSettings:
        return cls(**{**d, "groups": tuple(d["groups"])})


@dataclass(frozen=True)
class Layout:
    """Shapes of the accumulators: the model's layers (name → module path, channels and geometry)."""

    layers: tuple[str, ...]
    channels: tuple[int, ...]
    geometry: tuple[Geometry, ...]
    n_mels: int
    paths: tuple[str, ...] = ()  # module paths ("" = the model's output); default: the built-in model's

    def __post_init__(self) -> None:
        if not len(self.layers) == len(self.channels) == len(self.geometry) or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layout needs one channel count and geometry per distinct layer, got {self.layers}")
        if not self.paths:
            object.__setattr__(self, "paths", tuple(f"layers.{n}" for n in self.layers))
        if len(self.paths) != len(self.layers):
            raise ValueError("layout needs one module path per layer")

    @classmethod
    def of(cls, model: nn.Module | ModelDescription) -> Layout:
        """The layout of a model description (a bare module is described first)."""
        desc = model if isinstance(model, ModelDescription) else describe(model)
        if any(layer.geometry is None for layer in desc.layers):
            raise ValueError(f"{desc.name}: profiles of letters and phonemes need a model with a time axis")
        return cls(tuple(layer.name for layer in desc.layers), tuple(layer.channels for layer in desc.layers),
                   tuple(layer.geometry for layer in desc.layers), desc.input_channels,
                   tuple(layer.path for layer in desc.layers))

    @property
    def output(self) -> Geometry:
        return self.geometry[-1]

    def shift_bins(self) -> int:
        """Half-width of the shift histogram: shifts beyond the receptive field are impossible."""
        return self.output.rf


def empty(layout: Layout, s: ProfileSettings) -> dict[str, np.ndarray]:
    """Zeroed accumulators for a layout and settings."""
    z = {}
    wn, wp = 2 * s.nap_window + 1, 2 * s.pattern_window + 1
    for kind in s.groups:
        g = len(GROUPS[kind])
        for name, c in zip(layout.layers, layout.channels):
            z[f"nap/{name}/{kind}/sum"] = np.zeros((g, c))
            z[f"nap/{name}/{kind}/sumsq"] = np.zeros(c)
            z[f"nap/{name}/{kind}/count"] = np.zeros(g)
            if s.nap_window:
                z[f"wnap/{name}/{kind}/sum"] = np.zeros((g, wn, c))
                z[f"wnap/{name}/{kind}/count"] = np.zeros((g, wn))
            if kind == "letters" and s.gradient_adjusted:
                z[f"anap/{name}/{kind}/sum"] = np.zeros((g, wn, c))
                z[f"anap/{name}/{kind}/count"] = np.zeros((g, wn))
        aligns = ("aligned", "nominal") if kind == "letters" else ("aligned",)
        for a in aligns:
            if kind == "letters" and a == "aligned" and not s.relevance:
                continue
            z[f"pattern/{kind}/{a}/sum"] = np.zeros((g, wp, layout.n_mels))
            z[f"pattern/{kind}/{a}/count"] = np.zeros((g, wp))
    z["shift/hist"] = np.zeros(2 * layout.shift_bins() + 1)
    z["totals"] = np.zeros(4)  # utterances, input frames, letter occurrences, phoneme occurrences
    return z


def merge(into: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add a partial result into another (in place; returns it)."""
    if into.keys() != part.keys():
        raise ValueError("partial results of different settings cannot be merged")
    for k, v in part.items():
        into[k] += v
    return into


class Capture:
    """Forward hooks on the layers of a `Layout` (by module path), registered once for many forward
    passes (a context manager: the hooks are removed on exit, also after an exception)."""

    def __init__(self, model: nn.Module, layout: Layout):
        self.model, self.names, self.paths = model, layout.layers, layout.paths
        self.acts: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def __enter__(self) -> Capture:
        self.handles = [self.model.get_submodule(p).register_forward_hook(
            lambda _m, _i, o, n=n: self.acts.__setitem__(n, o)) for n, p in zip(self.names, self.paths)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __call__(self, x: torch.Tensor, keep_graph: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        self.acts = {}
        with torch.set_grad_enabled(keep_graph):
            out = self.model(x)
        return self.acts, out


def capture(model: nn.Module, layout: Layout, x: torch.Tensor,
            keep_graph: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs of the layout's layers for input ``x`` (hooks removed afterwards)."""
    with Capture(model, layout) as cap:
        return cap(x, keep_graph)
