"""Per-frame maps kept as receptive-field windows, and long inputs explained piece by piece.

A local method's map of output frame t is zero outside t's receptive field, so ``n`` maps of a
``T``-frame input need only ``n × width`` columns, not ``n × T``: what `attribute_frames` returns
with ``output="windows"``, and what makes a 10-minute recording explainable at all (its dense
maps of every frame would take hundreds of gigabytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..chunking import Piece, owned_exactly, pieces, run_in_pieces
from ..graph import FrameGeometry


@dataclass
class Windows:
    """Maps ``(n, *channels, width)``: column ``j`` of map ``i`` is input frame ``starts[i] + j``
    (columns outside ``[0, n_input)`` are zero)."""

    maps: torch.Tensor
    starts: torch.Tensor
    n_input: int

    def __len__(self) -> int:
        return self.maps.shape[0]

    def dense(self) -> torch.Tensor:
        """The maps over the whole input ``(n, *channels, n_input)``."""
        out = self.maps.new_zeros(len(self), *self.maps.shape[1:-1], self.n_input)
        width = self.maps.shape[-1]
        for i, a in enumerate(self.starts.tolist()):
            lo, hi = max(a, 0), min(a + width, self.n_input)
            if hi > lo:
                out[i, ..., lo:hi] = self.maps[i, ..., lo - a:hi - a]
        return out

    def profile(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ |map| over every axis but time ``(n, width)``, and the input frame of each column."""
        prof = self.maps.abs().reshape(len(self), -1, self.maps.shape[-1]).sum(1)
        cols = self.starts[:, None] + torch.arange(self.maps.shape[-1])[None]
        return prof.masked_fill((cols < 0) | (cols >= self.n_input), 0), cols

    @staticmethod
    def join(parts: list[Windows], n_input: int) -> Windows:
        """Concatenate (padding every part to the widest window)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Windows(torch.zeros(0, 1, 1), torch.zeros(0, dtype=torch.long), n_input)
        width = max(p.maps.shape[-1] for p in parts)
        return Windows(torch.cat([F.pad(p.maps, (0, width - p.maps.shape[-1])) for p in parts]),
                       torch.cat([p.starts for p in parts]), n_input)


def cut(maps: torch.Tensor, frames: list[int], geo: FrameGeometry | None) -> Windows:
    """Windows of dense maps ``(n, *channels, T)`` of ``frames`` (the whole map without a geometry)."""
    n_in = maps.shape[-1]
    if geo is None:
        return Windows(maps, torch.zeros(len(frames), dtype=torch.long), n_in)
    starts = torch.tensor([t * geo.stride + geo.offset for t in frames], dtype=torch.long)
    width = geo.rf
    out = maps.new_zeros(len(frames), *maps.shape[1:-1], width)
    for i, a in enumerate(starts.tolist()):
        lo, hi = max(a, 0), min(a + width, n_in)
        if hi > lo:
            out[i, ..., lo - a:hi - a] = maps[i, ..., lo:hi]
    return Windows(out, starts, n_in)


def explain_in_pieces(model, x: torch.Tensor, todo: list[int] | None, classes, geo: FrameGeometry, max_frames: int,
                      explain: Callable[[Piece, list[int], torch.Tensor], Windows]) -> Windows:
    """Windows of the frames ``todo`` (None: all) of a long input ``(1, C, T)``: each piece explains the frames
    it owns (`introspeech.chunking`) with ``explain(piece, local_frames, local_classes)``, one
    forward over the whole input gives the classes (and checks that the model may run in pieces)."""
    seen: list[tuple[Piece, int]] = []
    with torch.no_grad():
        out = run_in_pieces(model, x, geo, max_frames, on_piece=lambda p, o: seen.append((p, o.shape[-1])))
    n_out = out.shape[-1]
    todo = list(range(n_out)) if todo is None else todo
    cls = out[0].argmax(0) if isinstance(classes, str) else torch.as_tensor(classes).long()
    if cls.shape != (n_out,):
        raise ValueError(f"classes must be 'predicted' or one class per output frame ({n_out}), got {tuple(cls.shape)}")
    if any(t < 0 or t >= n_out for t in todo):
        raise ValueError(f"frames must lie in [0, {n_out}), got frames outside")
    order = torch.as_tensor(todo, dtype=torch.long)
    maps: torch.Tensor | None = None  # filled piece by piece: memory is the result plus one piece's windows
    starts = torch.zeros(len(todo), dtype=torch.long)
    end = 0
    for piece, n_local in seen:
        a, b, _ = owned_exactly(piece, geo, n_local, end)
        end = b
        mine = ((order >= a) & (order < b)).nonzero().flatten()
        if not len(mine):
            continue
        shift = piece.start // geo.stride
        w = explain(piece, (order[mine] - shift).tolist(), cls[shift:shift + n_local])
        if maps is None:
            maps = w.maps.new_zeros(len(todo), *w.maps.shape[1:-1], max(geo.rf, w.maps.shape[-1]))
        elif w.maps.shape[-1] > maps.shape[-1]:  # a wider cone than any before (not for a plain geometry)
            maps = F.pad(maps, (0, w.maps.shape[-1] - maps.shape[-1]))
        maps[mine, ..., :w.maps.shape[-1]] = w.maps
        starts[mine] = w.starts + piece.start
    if maps is None:
        return Windows(torch.zeros(0, *x.shape[1:-1], geo.rf, dtype=x.dtype), starts, x.shape[-1])
    return Windows(maps, starts, x.shape[-1])


__all__ = ["Windows", "cut", "explain_in_pieces", "pieces"]
