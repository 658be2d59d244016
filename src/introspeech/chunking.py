"""Long recordings in overlapping pieces, exactly.

A frame of a model that is local in time (a stack of convolutions, pools and pointwise layers)
depends only on its receptive field. A long input is cut into pieces that overlap by more than the
largest receptive field, each piece starting at a multiple of every layer's stride, so that frame
``p`` of a layer in a piece is frame ``p + start / stride`` of the whole run. Each layer frame is
*owned* by the one piece that holds the centre of its receptive field, and there the whole field
lies inside the piece (or meets the recording's true edges), so its value is the whole run's.
Memory then depends on the piece length, not on the recording's.

Shift-equivariance is what makes this exact; a model that is not (a learned position embedding,
a global pooling) would silently change. `run_in_pieces` therefore compares the frames that
neighbouring pieces both compute exactly, and raises when they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .graph import FrameGeometry, trace

MAX_FRAMES = 6000
"""Inputs longer than this (60 s at the built-in 10 ms hop) run in pieces by default."""


@dataclass(frozen=True)
class Piece:
    """The input slice ``[start, stop)`` of a recording of ``n_input`` frames; it owns the layer
    frames whose receptive-field centre lies in ``[lo, hi)``."""

    start: int
    stop: int
    lo: float
    hi: float
    n_input: int

    def owned(self, geo: FrameGeometry, n_local: int) -> tuple[int, int, int]:
        """Whole-run frames ``[a, b)`` of a layer (``n_local`` frames in this piece's run) that this
        piece owns, and the piece-run index of frame ``a``."""
        shift = self.start // geo.stride
        centre0 = geo.offset + (geo.rf - 1) / 2  # centre of frame 0

        def first_at(x: float) -> int:
            return shift if x == -math.inf else (shift + n_local if x == math.inf
                                                  else math.ceil((x - centre0) / geo.stride))
        a = min(max(first_at(self.lo), shift), shift + n_local)
        b = min(max(first_at(self.hi), a), shift + n_local)
        return a, b, a - shift

    def exact(self, geo: FrameGeometry, n_local: int) -> tuple[int, int]:
        """Whole-run frames ``[a, b)`` whose value in this piece equals the whole run's (the receptive
        field inside the piece, or clipped only by the recording's own edges)."""
        shift = self.start // geo.stride
        lo = 0 if self.start == 0 else math.ceil((self.start - geo.offset) / geo.stride)
        hi = shift + n_local if self.stop == self.n_input else (self.stop - geo.offset - geo.rf) // geo.stride + 1
        return max(lo, shift), min(hi, shift + n_local)


def pieces(n_input: int, geometries: Sequence[FrameGeometry], max_frames: int = MAX_FRAMES) -> list[Piece]:
    """Overlapping pieces of at most ``max_frames`` input frames covering ``n_input`` (one piece when
    it fits or ``max_frames`` is 0)."""
    if not max_frames or n_input <= max_frames:
        return [Piece(0, n_input, -math.inf, math.inf, n_input)]
    quantum = math.lcm(*(g.stride for g in geometries))
    margin = max(math.ceil(g.rf / 2) for g in geometries) + quantum  # centre to the field's edge, and rounding
    core = (max_frames - 2 * margin) // quantum * quantum
    if core < quantum:
        raise ValueError(f"max_frames={max_frames} is too short for a receptive field of "
                         f"{max(g.rf for g in geometries)} frames: use at least {2 * margin + quantum} (or 0: whole)")
    out = []
    for lo in range(0, n_input, core):
        hi = lo + core
        start = max(0, (lo - margin) // quantum * quantum)
        stop = min(n_input, hi + margin)
        out.append(Piece(start, stop, -math.inf if lo == 0 else lo, math.inf if hi >= n_input else hi, n_input))
    return out


def local_geometry(model: nn.Module, x: torch.Tensor, probe: int = 2000) -> FrameGeometry | None:
    """The output's frame geometry, traced in eval mode (modes restored) on the first ``probe``
    frames of ``x`` (the geometry does not depend on the length); None for a model without
    locality (attention, global pooling), which runs whole."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        return trace(model, x[..., :probe].detach()).geometry
    finally:
        for m, mode in modes.items():
            m.training = mode


def model_geometry(model: nn.Module, x: torch.Tensor, probe: int = 2000) -> FrameGeometry:
    """`local_geometry`, or an error that says why the model is not local in time."""
    traced = trace(model, x[..., :probe].detach())
    if traced.geometry is None:
        raise ValueError(f"the model is not local along time ({traced.not_local}): it cannot run in pieces; "
                         "pass max_frames=0 to run it whole")
    return traced.geometry


def run_in_pieces(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, geometry: FrameGeometry,
                  max_frames: int = MAX_FRAMES,
                  on_piece: Callable[[Piece, torch.Tensor], None] | None = None) -> torch.Tensor:
    """``run(x)`` (a ``(B, C, T_out)`` output of ``(B, C_in, T)`` input) computed piece by piece and
    joined: equal to the whole run for a shift-equivariant local model. Frames that two neighbouring
    pieces both compute exactly are compared; a difference (a model that is not shift-equivariant)
    raises instead of being joined. ``on_piece(piece, output)`` sees each piece's output."""
    parts = pieces(x.shape[-1], [geometry], max_frames)
    if len(parts) == 1:
        out = run(x)
        if on_piece:
            on_piece(parts[0], out)
        return out
    joined, previous, end = [], None, 0
    for piece in parts:
        out = run(x[..., piece.start:piece.stop])
        if on_piece:
            on_piece(piece, out)
        a, b, local = owned_exactly(piece, geometry, out.shape[-1], end)
        joined.append(out[..., local:local + b - a])
        if previous is not None:
            _compare(previous, (piece, out), geometry)
        previous, end = (piece, out), b
    return torch.cat(joined, dim=-1)


def owned_exactly(piece: Piece, geo: FrameGeometry, n_local: int, end: int) -> tuple[int, int, int]:
    """`Piece.owned`, checked: the owned frames are exact in the piece and continue the previous
    piece's (which ended at frame ``end``)."""
    a, b, local = piece.owned(geo, n_local)
    lo, hi = piece.exact(geo, n_local)
    if a != end or (b > a and (a < lo or b > hi)):
        raise AssertionError(f"piece {piece} owns frames {a}–{b} of a layer with geometry {geo}, exact only in "
                           f"{lo}–{hi} after frame {end}: the pieces do not fit this geometry")
    return a, b, local


def _compare(first: tuple[Piece, torch.Tensor], second: tuple[Piece, torch.Tensor], geo: FrameGeometry) -> None:
    (p, u), (q, v) = first, second
    a1, b1 = p.exact(geo, u.shape[-1])
    a2, b2 = q.exact(geo, v.shape[-1])
    a, b = max(a1, a2), min(b1, b2)
    if b <= a:
        return
    i, j = p.start // geo.stride, q.start // geo.stride
    s1, s2 = u[..., a - i:b - i], v[..., a - j:b - j]
    scale = float(max(s1.abs().max(), 1e-30))
    tol = (1e-4 if u.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9) * scale
    diff = float((s1 - s2).abs().max())
    if diff > tol:
        raise ValueError(f"the model's output at frames {a}–{b - 1} differs by {diff:.3g} between overlapping pieces "
                         f"(input frames {q.start}–{p.stop - 1}): it is not shift-equivariant along time, so it cannot "
                         "run in pieces; pass max_frames=0 to run it whole")
