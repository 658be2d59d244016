"""All output frames of a sequence model explained at once, exactly.

A frame's score depends only on its receptive field (its input window). Frames whose windows do
not overlap can share one backward pass: the backward of the sum of their scores is the sum of
their maps, each supported on its own window, so each map is cut out exactly (sparse-Jacobian
colouring, Curtis–Powell–Reid). Frames t ≡ c (mod ⌈rf/stride⌉) form colour c; every method whose
backward is linear in the output gradient for a fixed forward pass — gradient, gradient×input,
integrated gradients, SmoothGrad (shared noise), guided backprop, deconvnet, LRP, deep Taylor
with a fixed root — is computed with one row per colour instead of one pass per frame. Grad-CAM's
global average over positions is not local: its channel weights are summed from each frame's own
gradient cone (cones of one colour are disjoint too), then combined with all activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import methods as m
from .api import LOCAL_METHODS, check_options, method_function
from .cam import find_layer, layer_gradient, upsample
from .chain import chain_frames, chain_trace
from .hooks import LINEAR_TYPES, preserved, trace


@dataclass(frozen=True)
class FrameGeometry:
    """Output frame t looks at input frames ``[t*stride + offset, t*stride + offset + rf)``."""

    rf: int
    stride: int
    offset: int

    def window(self, t: int, n_input: int) -> tuple[int, int]:
        a = t * self.stride + self.offset
        return max(a, 0), min(a + self.rf, n_input)

    @property
    def spacing(self) -> int:
        """Frames this far apart have disjoint windows: the number of colours."""
        return math.ceil(self.rf / self.stride)


def _time_axis(v):
    """The last (time) entry of a per-axis layer setting."""
    return v[-1] if isinstance(v, tuple) else v


def chain_geometry(model: nn.Module, example: torch.Tensor) -> FrameGeometry:
    """Geometry along the last axis of a model whose leaves run as a chain of Conv/Pool/pad and
    pointwise layers (what `trace` records). Raises for other layers that change positions."""
    rf, stride, offset = 1, 1, 0
    for name, mod in trace(model, example).order:
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.AvgPool1d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (getattr(mod, a) for a in ("kernel_size", "stride", "padding", "dilation")) \
                if not isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)) else \
                (mod.kernel_size, mod.stride, mod.padding, 1)
            k, s, p, d = (_time_axis(v) for v in (k, s, p, d))
            offset -= p * stride
            rf += d * (k - 1) * stride
            stride *= s
        elif isinstance(mod, nn.ConstantPad1d):
            offset -= mod.padding[0] * stride
        elif isinstance(mod, LINEAR_TYPES[2:]) or isinstance(mod, (nn.Flatten, nn.AdaptiveAvgPool1d,
                                                                    nn.AdaptiveMaxPool1d)):
            raise ValueError(f"layer {name!r} ({type(mod).__name__}) mixes all positions: the model is not "
                             "local along time, pass geometry= explicitly or use attribute()")
    return FrameGeometry(rf, stride, offset)


def _selector(out: torch.Tensor, frames: list[int], classes: torch.Tensor, scale: bool) -> torch.Tensor:
    g = torch.zeros_like(out)
    idx = torch.as_tensor(frames, device=out.device)
    g[0, classes[idx], idx] = out[0, classes[idx], idx] if scale else 1.0
    return g


def attribute_frames(model: nn.Module, inputs: torch.Tensor, frames: str | list[int] = "all",
                     classes: str | torch.Tensor = "predicted", method: str = "gradient", chunk: int = 16,
                     geometry: FrameGeometry | None = None, progress: Callable[[int, int], None] | None = None,
                     engine: str = "auto", **options) -> torch.Tensor | list[torch.Tensor]:
    """One map per requested output frame of a ``(B, C_out, T_out)`` model.

    Returns ``(n_frames, *inputs.shape[1:])`` for one utterance (a list for several). ``classes``:
    ``"predicted"`` (best class per frame) or a tensor of one class per output frame. ``chunk``
    bounds the rows of one batched pass (memory ∝ chunk): colours per pass for the colouring engine,
    32·chunk frames per step for the chain engine (whose rows are receptive-field windows, not whole
    utterances). Equals the per-frame computation for every
    local method and for Grad-CAM.

    ``engine``: ``"auto"`` uses the cone-restricted chain engine (chain.py) where the model is a
    chain of 1-D layers and the method allows it, else colouring; ``"colour"`` / ``"chain"`` force one.
    """
    if inputs.dim() < 3:
        raise ValueError(f"inputs must be (batch, channels, time[, ...]) sequences, got {tuple(inputs.shape)}")
    if inputs.shape[0] > 1:
        return [attribute_frames(model, inputs[b:b + 1], frames, classes if isinstance(classes, str) else classes[b],
                                 method, chunk, geometry, progress, engine, **options) for b in range(inputs.shape[0])]
    name, fn = method_function(method)
    check_options(name, fn, options)
    if engine not in ("auto", "chain", "colour"):
        raise ValueError(f"engine must be 'auto', 'chain' or 'colour', not {engine!r}")
    with preserved(model):
        with torch.no_grad():
            out = model(inputs)
        if out.dim() != 3:
            raise ValueError(f"attribute_frames needs (batch, classes, frames) outputs, the model gives {tuple(out.shape)}")
        n_out = out.shape[2]
        cls = out[0].argmax(0) if isinstance(classes, str) else torch.as_tensor(classes, device=out.device).long()
        if cls.shape != (n_out,):
            raise ValueError(f"classes must be 'predicted' or one class per output frame ({n_out}), got {tuple(cls.shape)}")
        todo = list(range(n_out)) if isinstance(frames, str) else [int(t) for t in frames]
        if any(t < 0 or t >= n_out for t in todo):
            raise ValueError(f"frames must lie in [0, {n_out}), got {todo}")
        geo = geometry or chain_geometry(model, inputs)
        if name in ("grad_cam", "guided_grad_cam"):
            return _cam_frames(model, inputs, out, todo, cls, name, geo, chunk, progress, **options)
        if name not in LOCAL_METHODS:  # pragma: no cover - every method is listed
            raise ValueError(f"method {name!r} is not supported by attribute_frames")
        searched = name == "deep_taylor" and isinstance(options.get("root"), str)
        traced = chain_trace(model, inputs) if engine in ("auto", "chain") and not searched else None
        if traced is not None:
            return chain_frames(model, inputs, out, todo, cls, name, chunk * 32, progress, traced, **options)
        if engine == "chain":
            raise ValueError("engine='chain' needs a chain of Conv1d/BatchNorm1d/ReLU/ConstantPad1d/Dropout layers")
        return _colored(model, inputs, out, todo, cls, name, geo, chunk, progress, **options)


def _colour_rows(todo: list[int], spacing: int) -> list[list[int]]:
    colours: dict[int, list[int]] = {}
    for t in todo:
        colours.setdefault(t % spacing, []).append(t)
    return [colours[c] for c in sorted(colours)]


def _row_maps(model, x, out, rows: list[list[int]], cls, name: str, **options) -> torch.Tensor:
    """Maps of one batched pass: row r explains the sum of the frames of colour r."""
    n = len(rows)
    xr = x.expand(n, *x.shape[1:])
    scale = name == "lrp" or (name == "deep_taylor" and options.get("root") is None)
    grad = torch.cat([_selector(out, r, cls, scale) for r in rows])
    if name == "smoothgrad":  # every row gets the utterance's noise
        noise = m.smoothgrad_noise(x, options)
        opts = {k: v for k, v in options.items() if k not in ("noise", "seed", "samples")}
        return m.smoothgrad(model, xr, grad, noise=noise.repeat(n, *([1] * (x.dim() - 1))), samples=noise.shape[0],
                            **opts)
    if name == "deep_taylor" and options.get("root") is not None:
        root = options["root"]
        if isinstance(root, str):
            raise ValueError("deep_taylor with a searched root has a different root per frame: it is not "
                             "linear in the target, use attribute() per frame or give a fixed root tensor")
        x0 = torch.as_tensor(root, dtype=x.dtype).expand_as(x).expand(n, *x.shape[1:])
        return (xr - x0) * m.backward(model, x0, grad)[0]
    _, fn = method_function(name)
    return fn(model, xr, grad, **options)


def _colored(model, x, out, todo, cls, name, geo: FrameGeometry, chunk: int, progress, **options) -> torch.Tensor:
    result = torch.zeros(len(todo), *x.shape[1:], dtype=x.dtype, device=x.device)
    where = {t: i for i, t in enumerate(todo)}
    rows = _colour_rows(todo, geo.spacing)
    n_in = x.shape[-1]
    for k in range(0, len(rows), max(1, chunk)):
        block = rows[k:k + chunk]
        maps = _row_maps(model, x, out, block, cls, name, **options)
        for r, frames in enumerate(block):
            for t in frames:
                a, b = geo.window(t, n_in)
                result[where[t], ..., a:b] = maps[r, ..., a:b]
        if progress:
            progress(min(k + chunk, len(rows)), len(rows))
    return result


def _cam_frames(model, x, out, todo, cls, name, geo: FrameGeometry, chunk: int, progress, layer, relu: bool = True,
                mode: str = "linear") -> torch.Tensor:
    """Grad-CAM per frame: α_t,k = mean over positions of ∂y_t/∂A_k, from colour rows whose
    per-frame gradient cones at the layer are disjoint; map_t = ReLU(Σ_k α_t,k A_k)."""
    module = find_layer(model, layer)
    rows = _colour_rows(todo, geo.spacing)
    alphas: torch.Tensor | None = None  # (frames, channels), allocated once the layer's width is known
    where = {t: i for i, t in enumerate(todo)}
    acts = None
    for k in range(0, len(rows), max(1, chunk)):
        block = rows[k:k + chunk]
        n = len(block)
        grad_out = torch.cat([_selector(out, r, cls, False) for r in block])
        a, g, _ = layer_gradient(model, x.expand(n, *x.shape[1:]), grad_out, module)
        acts = a[:1]
        if alphas is None:
            alphas = torch.zeros(len(todo), a.shape[1], dtype=a.dtype)
        t_layer = a.shape[-1]
        pos = torch.arange(t_layer, dtype=torch.float64)
        for r, frames in enumerate(block):
            centres = torch.tensor(frames, dtype=torch.float64) * (t_layer / out.shape[2])
            owner = (pos[:, None] - centres[None, :]).abs().argmin(1)  # nearest frame of this colour
            for j, t in enumerate(frames):
                sel = g[r][..., owner == j]
                alphas[where[t]] = sel.reshape(sel.shape[0], -1).sum(-1) / math.prod(a.shape[2:])
        if progress:
            progress(min(k + chunk, len(rows)), len(rows))
    cams = (alphas.reshape(*alphas.shape, *([1] * (acts.dim() - 2))) * acts).sum(1)
    cams = torch.relu(cams) if relu else cams
    maps = upsample(cams, x.expand(len(todo), *x.shape[1:]), mode)
    if name == "guided_grad_cam":
        guided = _colored(model, x, out, todo, cls, "guided_backprop", geo, chunk, None)
        return guided * maps
    return maps.contiguous()
