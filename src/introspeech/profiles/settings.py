"""What a profile run accumulates (`ProfileSettings`, stored with the results) and the shapes it
accumulates into (`Layout`: the described model's layers, their module paths, channels and geometry)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..asr.model import Geometry
from ..chunking import MAX_FRAMES
from ..models.description import ModelDescription, Output, describe
from ..text import BLANK, LETTERS
from .labels import PHONEME_GROUPS

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
    max_frames: int = MAX_FRAMES  # longer utterances run in overlapping pieces (memory bounded; 0: whole)

    def __post_init__(self) -> None:
        bad = [g for g in self.groups if g not in KINDS]
        if bad or not self.groups:
            raise ValueError(f"groups must be some of {', '.join(KINDS)}, got {','.join(self.groups) or 'none'}")
        if self.letters_from not in ("reference", "prediction"):
            raise ValueError(f"letters_from must be 'reference' or 'prediction', not {self.letters_from!r}")
        if self.align_by not in ("max", "centre"):
            raise ValueError(f"align_by must be 'max' or 'centre', not {self.align_by!r}")
        if self.nap_window < 0 or self.pattern_window < 0 or self.threads < 1 or self.max_frames < 0:
            raise ValueError("nap_window, pattern_window and max_frames must be ≥ 0 and threads ≥ 1")
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
    letters: tuple[str, ...] = LETTERS  # the letter groups: the model's CTC alphabet without its blank
    blank: int = BLANK  # the blank's output index
    time_axes: tuple[int, ...] = ()  # per layer: -1 (batch, channels, time) or 1 (batch, time, channels); default -1
    local: bool = True  # every layer's geometry is a receptive field (else the model runs whole, never in pieces)

    def __post_init__(self) -> None:
        if not len(self.layers) == len(self.channels) == len(self.geometry) or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layout needs one channel count and geometry per distinct layer, got {self.layers}")
        if not self.paths:
            object.__setattr__(self, "paths", tuple(f"layers.{n}" for n in self.layers))
        if len(self.paths) != len(self.layers):
            raise ValueError("layout needs one module path per layer")
        if not self.time_axes:
            object.__setattr__(self, "time_axes", (-1,) * len(self.layers))
        if len(self.time_axes) != len(self.layers) or any(a not in (-1, 1) for a in self.time_axes):
            raise ValueError(f"layout needs a time axis (-1 or 1) per layer, got {self.time_axes}")

    @classmethod
    def of(cls, model: nn.Module | ModelDescription) -> Layout:
        """The layout of a model description (a bare module is described first)."""
        desc = model if isinstance(model, ModelDescription) else describe(model)
        if any(layer.geometry is None for layer in desc.layers):
            raise ValueError(f"{desc.name}: profiles of letters and phonemes need a model with a time axis")
        ctc = desc.output.kind == "ctc"
        return cls(tuple(layer.name for layer in desc.layers), tuple(layer.channels for layer in desc.layers),
                   tuple(layer.geometry for layer in desc.layers), desc.input_channels,
                   tuple(layer.path for layer in desc.layers), desc.output.letters if ctc else (),
                   desc.output.blank if ctc else -1, tuple(layer.time_axis for layer in desc.layers),
                   all(layer.local for layer in desc.layers))

    def groups(self, kind: str) -> tuple[str, ...]:
        """The group names of a labelling: the model's letters, or the phonemes (ARPAbet + silence)."""
        return self.letters if kind == "letters" else PHONEME_GROUPS

    def encode(self, text: str) -> list[int]:
        """Output indices of a normalized transcript in the model's alphabet (`Output.encode`)."""
        alphabet = self.letters[:self.blank] + ("<blank>",) + self.letters[self.blank:]
        return Output("ctc", alphabet, self.blank).encode(text)

    def letter_groups(self, symbols: np.ndarray) -> np.ndarray:
        """Letter group of each output index (the alphabet's order, the blank left out)."""
        return np.where(symbols > self.blank, symbols - 1, symbols)

    @property
    def output(self) -> Geometry:
        return self.geometry[-1]

    def shift_bins(self) -> int:
        """Half-width of the shift histogram: shifts beyond the receptive field are impossible."""
        return self.output.rf
