"""Alignment of predictions: where in the input does the evidence for an emitted letter lie?

A letter emitted at output frame t is not found at input frame ``centre(t)``: the model may look
ahead or behind within its receptive field. The attribution map of that prediction says where its
evidence is: the input frame with the largest summed |relevance| (or the centre of mass of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..asr.decode import greedy_runs
from ..asr.model import Geometry
from ..attribution.frames import FrameGeometry, attribute_frames


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


def align_emissions(model: nn.Module, x: torch.Tensor, scores: torch.Tensor, out_geo: Geometry,
                    method: str = "gradient", by: str = "max", **options) -> AlignedEmissions:
    """Every letter of the greedy CTC path of ``scores`` ``(n_symbols, frames)`` for input
    ``x`` ``(1, n_mels, time)``, with its nominal and relevance-aligned input frame.

    The emission's frame is the frame of its run where its own score is highest (the earliest on
    ties); the relevance map is that of that score (``attribute_frames``, all emissions in one call)."""
    sc = scores.detach().cpu().numpy()
    best_symbol = sc.argmax(0)
    symbol, starts, ends = greedy_runs(best_symbol)
    if symbol.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return AlignedEmissions(empty, empty, empty, empty)
    lengths = ends - starts + 1
    run = np.repeat(np.arange(symbol.size), lengths)
    pos = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
    order = np.lexsort((pos, -sc.max(0)[pos], run))  # per run: highest score first, earliest frame on ties
    frames = pos[order][np.r_[0, np.cumsum(lengths)[:-1]]]
    nominal = np.clip(np.rint(out_geo.centre(0) + out_geo.stride * frames), 0, x.shape[2] - 1).astype(np.int64)
    if not method:
        return AlignedEmissions(symbol, frames, nominal, nominal)
    geo = FrameGeometry(out_geo.rf, out_geo.stride, out_geo.offset)
    maps = attribute_frames(model, x, frames=frames.tolist(), classes="predicted", method=method, geometry=geo,
                            **options)
    aligned = np.array([evidence_frame(m.numpy(), by) for m in maps], dtype=np.int64)
    return AlignedEmissions(symbol, frames, nominal, aligned)
