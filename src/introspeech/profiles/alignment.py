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

from ..asr.decode import greedy_path
from ..asr.model import Geometry
from ..attribution.frames import FrameGeometry, attribute_frames


@dataclass(frozen=True)
class AlignedEmission:
    """An emitted letter: its output frame, nominal input frame (receptive-field centre) and the
    input frame its relevance points to (== nominal when no relevance method is given)."""

    symbol: int
    frame: int
    nominal: int
    aligned: int

    @property
    def shift(self) -> int:
        return self.aligned - self.nominal


def evidence_frame(relevance: np.ndarray, by: str = "max") -> int:
    """Input frame of a map ``(n_mels, time)``: argmax over time of Σ_mel |R|, or its centre of mass."""
    profile = np.abs(relevance).sum(0)
    if by == "max" or profile.sum() == 0:
        return int(profile.argmax())
    return int(np.rint((profile * np.arange(profile.size)).sum() / profile.sum()))


def align_emissions(model: nn.Module, x: torch.Tensor, scores: torch.Tensor, out_geo: Geometry,
                    method: str = "gradient", by: str = "max", **options) -> list[AlignedEmission]:
    """Every letter of the greedy CTC path of ``scores`` ``(n_symbols, frames)`` for input
    ``x`` ``(1, n_mels, time)``, with its nominal and relevance-aligned input frame.

    The emission's frame is the frame of its run where its own score is highest; the relevance map
    is that of that score (``attribute_frames``, every emission in one batched pass)."""
    em = greedy_path(scores)
    if not em:
        return []
    sc = scores.detach().cpu().numpy()
    best = sc.max(0)  # on the greedy path the emitted letter is the best symbol of each frame of its run
    run = np.repeat(np.arange(len(em)), [e.end - e.start + 1 for e in em])
    pos = np.concatenate([np.arange(e.start, e.end + 1) for e in em])
    order = np.lexsort((pos, -best[pos], run))  # per run: highest score first, earliest frame on ties
    firsts = np.r_[0, np.flatnonzero(np.diff(run[order])) + 1]
    frames = pos[order][firsts].tolist()
    nominal = np.clip(np.rint(out_geo.centre(0) + out_geo.stride * np.asarray(frames)), 0, x.shape[2] - 1)
    nominal = nominal.astype(int).tolist()
    if not method:
        return [AlignedEmission(e.symbol, t, c, c) for e, t, c in zip(em, frames, nominal)]
    geo = FrameGeometry(out_geo.rf, out_geo.stride, out_geo.offset)
    maps = attribute_frames(model, x, frames=frames, classes="predicted", method=method, geometry=geo, **options)
    return [AlignedEmission(e.symbol, t, c, evidence_frame(m.numpy(), by))
            for e, t, c, m in zip(em, frames, nominal, maps)]
