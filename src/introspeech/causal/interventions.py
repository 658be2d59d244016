"""Edits of activations at named layers, for as long as a ``with`` block runs.

`intervene(model, [Edit(...), ...])` registers one forward hook per edited layer that returns the
edited output; on leaving the block, also after an exception, the hooks are removed and the model is
exactly as it was (nothing else is touched: no parameter, buffer or mode). An edit acts on some
channels (``units``; all by default) of a layer's output along its channel axis (axis 1 for
``(batch, channels, time)`` outputs, the last axis for ``(batch, time, channels)``, as a model
description's ``Layer.time_axis`` says):

    zero         a = 0
    mean         a = m            m: one value per channel (a corpus mean, say), the same at every frame
    patch        a = b            b: the layer's output on another input, shaped like the output
    add          a = a + s·d      d: one direction over the channels (steering)
    project_out  a = a − (a·d̂) d̂  the component along a direction removed (d̂ = d / |d|)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

KINDS = ("zero", "mean", "patch", "add", "project_out")


@dataclass(frozen=True)
class Edit:
    """One edit of a layer's output (see the module docstring)."""

    layer: str
    kind: str
    units: Sequence[int] | None = None
    value: torch.Tensor | None = None
    scale: float = 1.0
    time_axis: int = -1  # of the layer's output: -1 (batch, channels, time) or 1 (batch, time, channels)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"edit of {self.layer!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind != "zero" and self.value is None:
            raise ValueError(f"edit of {self.layer!r}: {self.kind!r} needs value=")
        if self.time_axis not in (-1, 1):
            raise ValueError(f"edit of {self.layer!r}: time_axis must be -1 or 1, not {self.time_axis}")

    def apply(self, out: torch.Tensor) -> torch.Tensor:
        """The edited output (a new tensor; the module's own output is left as it is)."""
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            raise ValueError(f"edit of {self.layer!r}: the layer's output is not a (batch, …) tensor")
        channel_axis = 1 if self.time_axis == -1 or out.dim() == 2 else out.dim() - 1
        a = out.movedim(channel_axis, -1)  # channels last: (..., C)
        n = a.shape[-1]
        idx = torch.arange(n, device=a.device) if self.units is None else torch.as_tensor(list(self.units),
                                                                                            device=a.device).long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"edit of {self.layer!r}: units {idx.tolist()} outside its {n} channels")
        mask = torch.zeros(n, dtype=torch.bool, device=a.device)
        mask[idx] = True
        if self.kind == "zero":
            new = torch.zeros_like(a)
        elif self.kind == "mean":
            new = self._channels(n).to(a).expand_as(a)
        elif self.kind == "patch":
            b = torch.as_tensor(self.value).to(a)
            if b.shape != out.shape:
                raise ValueError(f"edit of {self.layer!r}: patched value {tuple(b.shape)} for an output "
                                 f"{tuple(out.shape)}")
            new = b.movedim(channel_axis, -1)
        else:
            d = self._channels(n).to(a) * mask  # only the chosen units' part of the direction
            if self.kind == "add":
                new = a + self.scale * d
            else:
                unit = d / d.norm().clamp_min(1e-12)
                new = a - (a * unit).sum(-1, keepdim=True) * unit
        return torch.where(mask, new, a).movedim(-1, channel_axis)

    def _channels(self, n: int) -> torch.Tensor:
        v = torch.as_tensor(self.value).flatten()
        if v.numel() != n:
            raise ValueError(f"edit of {self.layer!r}: a value per channel needs {n} values, got {v.numel()}")
        return v


@contextlib.contextmanager
def intervene(model: nn.Module, edits: Sequence[Edit]) -> Iterator[nn.Module]:
    """The model with ``edits`` applied to its layers' outputs while the block runs.

    >>> with intervene(model, [Edit("layers.layer3", "mean", units=[4, 17], value=means)]):
    ...     scores = model(x)
    """
    named = dict(model.named_modules())
    missing = [e.layer for e in edits if e.layer not in named]
    if missing:
        raise ValueError(f"no module {missing[0]!r} in the model; modules: {[n for n in named if n][:12]}")
    by_layer: dict[str, list[Edit]] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(e)
    handles = []

    def hook(layer_edits):
        def fn(_m, _inp, out):
            for e in layer_edits:
                out = e.apply(out)
            return out
        return fn

    try:
        for layer, layer_edits in by_layer.items():
            handles.append(named[layer].register_forward_hook(hook(layer_edits)))
        yield model
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def mean_ablations(model: nn.Module, layer: str, masks: torch.Tensor, mean: torch.Tensor,
                   time_axis: int = -1, frames: int | None = None, broadcast: bool = False) -> Iterator[nn.Module]:
    """One mean ablation per batch element: element b of the layer's output has the channels where
    ``masks[b]`` (``(batch, channels)``, bool) is set replaced by ``mean`` (``(channels,)``) at every
    frame (the first ``frames`` frames only, when given: a model's own padding stays as it is); the
    model is left as it was on leaving the block (equal to `intervene` with a ``mean`` `Edit` per
    element, tested). ``broadcast``: an output of batch one (the layers before ran once) becomes one
    copy per mask here."""
    named = dict(model.named_modules())
    if layer not in named:
        raise ValueError(f"no module {layer!r} in the model; modules: {[n for n in named if n][:12]}")

    def fn(_m, _inp, out):
        if broadcast and isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[0] == 1:
            out = out.expand(masks.shape[0], *out.shape[1:])
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != masks.shape[0]:
            raise ValueError(f"mean ablations of {layer!r}: {masks.shape[0]} masks for an output "
                             f"{tuple(getattr(out, 'shape', ()))}")
        channel_axis = 1 if time_axis == -1 or out.dim() == 2 else out.dim() - 1
        a = out.movedim(channel_axis, -1)
        if a.shape[-1] != masks.shape[1] or mean.numel() != masks.shape[1]:
            raise ValueError(f"mean ablations of {layer!r}: masks of {masks.shape[1]} and {mean.numel()} means for "
                             f"{a.shape[-1]} channels")
        shape = (a.shape[0],) + (1,) * (a.dim() - 2) + (a.shape[-1],)
        where = masks.to(a.device).view(shape)
        if frames is not None:
            if a.dim() != 3:
                raise ValueError(f"mean ablations of {layer!r}: frames= needs a (batch, time, channels) output")
            where = where & (torch.arange(a.shape[1], device=a.device) < frames).view(1, -1, 1)
        new = torch.where(where, mean.to(a).flatten(), a)
        return new.movedim(-1, channel_axis)

    handle = named[layer].register_forward_hook(fn)
    try:
        yield model
    finally:
        handle.remove()
