"""Alignment of predictions: where in the input does the evidence for an emitted letter lie?

A letter emitted at output frame t is not found at input frame ``centre(t)``: the model may look
ahead or behind within its receptive field. The attribution map of that prediction says where its
evidence is: the input frame with the largest summed |relevance| (or the centre of mass of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from torch import nn

from ..asr.model import Geometry
from ..attribution.frames import FrameGeometry, Windows, attribute_frames
from ..chunking import MAX_FRAMES
from ..text import BLANK


@dataclass(frozen=True)
class AlignedEmissions:
    """The emitted letters of an utterance (arrays, one entry per letter): symbol, output frame,
    nominal input frame (receptive-field centre) and the input frame its relevance points to
    (== nominal when no relevance method is given)."""

    symbol: np.ndarray
    frame: np.ndarray
    nominal: np.ndarray
    aligned: np.ndarray

    def __len__(self) -> int:
        return int(self.symbol.size)

    @property
    def shift(self) -> np.ndarray:
        return self.aligned - self.nominal


def evidence_frame(relevance: np.ndarray, by: str = "max") -> int:
    """Input frame of a map ``(n_mels, time)``: argmax over time of Σ_mel |R|, or its centre of mass."""
    profile = np.abs(relevance).sum(0)
    if by == "max" or profile.sum() == 0:
        return int(profile.argmax())
    return int(np.rint((profile * np.arange(profile.size)).sum() / profile.sum()))


@njit(cache=True, nogil=True)
def emission_frames(scores: np.ndarray, blank: int = BLANK) -> tuple[np.ndarray, np.ndarray]:
    """Letters of the greedy CTC path of ``scores`` ``(n_symbols, frames)`` and, for each, the frame
    of its run where its score is highest (the earliest on ties)."""
    n_sym, n_t = scores.shape
    symbol = np.empty(n_t, dtype=np.int64)
    frame = np.empty(n_t, dtype=np.int64)
    n, prev, best = 0, -1, -np.inf
    for t in range(n_t):
        s, v = 0, scores[0, t]
        for k in range(1, n_sym):
            if scores[k, t] > v:
                s, v = k, scores[k, t]
        if s != prev:
            prev, best = s, -np.inf
            if s != blank:
                symbol[n], frame[n] = s, t
                n += 1
        if s != blank and v > best:
            best = v
            frame[n - 1] = t
    return symbol[:n], frame[:n]


def align_emissions(model: nn.Module, x: torch.Tensor, scores: torch.Tensor, out_geo: Geometry,
                    method: str = "gradient", by: str = "max", max_frames: int = MAX_FRAMES,
                    blank: int = BLANK, local: bool = True, **options) -> AlignedEmissions:
    """Every letter of the greedy CTC path of ``scores`` ``(n_symbols, frames)`` for input
    ``x`` ``(1, n_mels, time)``, with its nominal and relevance-aligned input frame.

    The emission's frame is the frame of its run where its own score is highest (the earliest on
    ties); the relevance map is that of that score (``attribute_frames``, all emissions in one call).
    ``local=False`` (a model with attention): ``out_geo`` is nominal, every map covers the whole input."""
    symbol, frames = emission_frames(np.ascontiguousarray(scores.detach().cpu().numpy()), blank)
    if symbol.size == 0:
        return AlignedEmissions(symbol, frames, frames, frames)
    nominal = np.clip(np.rint(out_geo.centre(0) + out_geo.stride * frames), 0, x.shape[2] - 1).astype(np.int64)
    if not method:
        return AlignedEmissions(symbol, frames, nominal, nominal)
    geo = FrameGeometry(out_geo.rf, out_geo.stride, out_geo.offset) if local else None
    windows = attribute_frames(model, x, frames=frames.tolist(), classes=scores.argmax(0), method=method, geometry=geo,
                               output="windows", max_frames=max_frames if local else 0, **options)  # classes given:
    # no second forward
    return AlignedEmissions(symbol, frames, nominal, evidence_frames(windows, by))


def evidence_frames(windows: Windows, by: str = "max") -> np.ndarray:
    """`evidence_frame` of every map of `Windows` (the input frame, not the column)."""
    prof, cols = windows.profile()
    prof, cols = prof.double().numpy(), cols.numpy()
    if not len(prof):
        return np.zeros(0, dtype=np.int64)
    total = prof.sum(1)
    best = np.where(total > 0, cols[np.arange(len(prof)), prof.argmax(1)], 0)  # a zero map: frame 0, as evidence_frame
    if by == "max":
        return best.astype(np.int64)
    mass = np.rint((prof * cols).sum(1) / np.where(total > 0, total, 1))
    return np.where(total > 0, mass, best).astype(np.int64)
