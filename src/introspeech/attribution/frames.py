"""All output frames of a sequence model explained at once, exactly.

A frame's score depends only on its receptive field (its input window). Three engines give the
same maps, each evaluating the method's one `methods.Plan`:

- ``cone`` (cone.py): for graphs of 1-D layers (chains, residual blocks), a backward pass
  restricted to each frame's cone;
- ``colour``: frames whose windows do not overlap share one backward pass: the backward of the sum
  of their scores is the sum of their maps, each supported on its own window, so each map is cut
  out exactly (sparse-Jacobian colouring, Curtis–Powell–Reid). Frames t ≡ c (mod ⌈rf/stride⌉)
  form colour c. Any local model (residual, separable, 2-D) whose geometry `graph.trace` infers
  (or that is given); every method whose backward is linear in the output gradient for a fixed
  forward pass;
- ``loop``: `attribute` once per frame (the reference; also what a method that is not linear in
  the target, deep Taylor with a searched root, needs).

- ``batched`` (batched.py): for models without locality (attention, global pooling), one shared
  forward pass and the backward passes of ``chunk`` frames at a time, vectorized.

``auto`` takes the cone engine where it applies, else colouring, else (a model that is not local
in time) the batched engine, else the loop. Grad-CAM's global
average over positions is not local: its channel weights are summed from each frame's own gradient
cone (cones of one colour are disjoint too), then combined with all activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..chunking import MAX_FRAMES, local_geometry, model_geometry
from ..graph import FrameGeometry, trace
from . import methods as m
from .api import attribute
from .batched import batched_frames
from .cam import find_layer, layer_gradient, upsample
from .cone import NotCone, cone_frames
from .definitions import Method
from .definitions import method as lookup
from .hooks import preserved
from .windows import Windows, cut, explain_in_pieces

ENGINES = ("auto", "cone", "colour", "batched", "loop")
ENGINE_ALIASES = {"chain": "cone", "color": "colour"}
__all__ = ["attribute_frames", "FrameGeometry", "Windows", "chain_geometry", "ENGINES"]


def chain_geometry(model: nn.Module, example: torch.Tensor) -> FrameGeometry:
    """Geometry of the output frames along the last axis (any traced graph of standard layers)."""
    return trace(model, example).frame_geometry()


def _selector(out: torch.Tensor, frames: list[int], classes: torch.Tensor) -> torch.Tensor:
    g = torch.zeros_like(out)
    idx = torch.as_tensor(frames, device=out.device)
    g[0, classes[idx], idx] = 1.0
    return g


def attribute_frames(model: nn.Module, inputs: torch.Tensor, frames: str | list[int] = "all",
                     classes: str | torch.Tensor = "predicted", method: str = "gradient", chunk: int = 16,
                     geometry: FrameGeometry | None = None, progress: Callable[[int, int], None] | None = None,
                     engine: str = "auto", output: str = "dense", max_frames: int = MAX_FRAMES,
                     **options) -> torch.Tensor | Windows | list:
    """One map per requested output frame of a ``(B, C_out, T_out)`` model.

    Returns ``(n_frames, *inputs.shape[1:])`` for one utterance (a list for several), or with
    ``output="windows"`` a `Windows` (each map cut to its receptive field: what a long recording
    needs). ``classes``: ``"predicted"`` (best class per frame) or a tensor of one class per output
    frame. ``chunk`` bounds the rows of one batched pass (memory ∝ chunk): colours per pass for the
    colouring engine, 8·chunk frames per step for the cone engine (whose rows are receptive-field
    windows, not whole utterances). Inputs longer than ``max_frames`` are explained in overlapping
    pieces (`introspeech.chunking`; the same maps, working memory bounded by the piece; 0: whole); a
    model without locality always runs whole.
    Every engine equals `attribute` called per frame, for every method and option (see the module
    docstring); ``engine`` forces one, and one that cannot honour the method, the options or the
    model raises an error that says why. A model without locality (attention, global pooling) runs
    on the ``batched`` engine (batched.py: one forward, ``chunk`` frames per batched backward).

    >>> maps = attribute_frames(model, x, "all", "predicted", "lrp", composite="epsilon-plus")
    """
    if inputs.dim() < 3:
        raise ValueError(f"inputs must be (batch, channels, time[, ...]) sequences, got {tuple(inputs.shape)}")
    if inputs.shape[0] > 1:
        return [attribute_frames(model, inputs[b:b + 1], frames, classes if isinstance(classes, str) else classes[b],
                                 method, chunk, geometry, progress, engine, output, max_frames, **options)
                for b in range(inputs.shape[0])]
    if output not in ("dense", "windows"):
        raise ValueError(f"output must be 'dense' or 'windows', not {output!r}")
    spec = lookup(method)
    opts = spec.resolve(options)
    engine = ENGINE_ALIASES.get(engine, engine)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    x = inputs.detach()
    if max_frames and x.shape[-1] > max_frames and geometry is None:
        geometry = local_geometry(model, x)
        if geometry is None:
            max_frames = 0  # a model without locality (attention, global pooling) cannot run in pieces: whole
    if max_frames and x.shape[-1] > max_frames:
        if not spec.local:
            raise ValueError(f"{spec.name} is not local in time: an input of {x.shape[-1]} frames cannot be explained "
                             "in pieces; pass max_frames=0 to run it whole")
        with preserved(model):
            geo = geometry or model_geometry(model, x)
            todo = None if isinstance(frames, str) else [int(t) for t in frames]
            whole = spec.for_input(options, x)

            def explain(piece, local, local_cls):
                sliced = {k: _slice_along(v, x, piece.start, piece.stop) for k, v in whole.items()}
                return attribute_frames(model, x[..., piece.start:piece.stop], local, local_cls, method, chunk, geo,
                                        None, engine, "windows", 0, **sliced)
            w = explain_in_pieces(model, x, todo, classes, geo, max_frames, explain)
        return w if output == "windows" else w.dense()
    with preserved(model):
        result = _explain(model, x, frames, classes, spec, opts, options, chunk, geometry, progress, engine,
                          output == "windows")
    if isinstance(result, Windows):
        return result if output == "windows" else result.dense()
    if output == "windows" and spec.local:  # a model without locality: each map's window is the whole input
        return Windows(result, torch.zeros(len(result), dtype=torch.long), x.shape[-1])
    if output == "windows":
        raise ValueError(f"{spec.name} maps of this model are not local in time: output='windows' needs a local "
                         "method and a model whose frames see a window of the input")
    return result


def _explain(model, x, frames, classes, spec: Method, opts: dict, options: dict, chunk: int,
             geometry: FrameGeometry | None, progress, engine: str, windows: bool) -> Windows | torch.Tensor:
    """The engine's maps of one utterance: `Windows` for local methods, dense for the CAM family."""
    out = None
    if isinstance(classes, str) or not spec.local:  # explicit classes: the local engines need no forward here
        with torch.no_grad():
            out = model(x)
        if out.dim() != 3:
            raise ValueError(f"attribute_frames needs (batch, classes, frames) outputs, the model gives "
                             f"{tuple(out.shape)}")
    n_out = out.shape[2] if out is not None else len(classes)
    cls = out[0].argmax(0) if isinstance(classes, str) else torch.as_tensor(classes, device=x.device).long()
    if cls.shape != (n_out,):
        raise ValueError(f"classes must be 'predicted' or one class per output frame ({n_out}), got {tuple(cls.shape)}")
    todo = list(range(n_out)) if isinstance(frames, str) else [int(t) for t in frames]
    if any(t < 0 or t >= n_out for t in todo):
        raise ValueError(f"frames must lie in [0, {n_out}), got {todo}")
    if spec.frames is not None:  # perturbation methods: every frame from the same forward passes
        if engine not in ("auto", "loop"):
            raise ValueError(f"{spec.name} is a perturbation method: it has no engine={engine!r} (use 'auto')")
        if engine == "auto":  # a patch or span that meets the receptive field spreads beyond it: dense maps
            return spec.frames(model, x, todo, cls, **opts)
    if engine == "loop" or not spec.linear_in_target(opts):
        if engine not in ("loop", "auto"):
            raise ValueError(f"{spec.name} with these options ({_nonlinear_why(spec, opts)}) is not linear in the "
                             f"target: engine={engine!r} cannot share passes between frames; use engine='loop' or 'auto'")
        cut_to = (geometry or chain_geometry(model, x)) if windows and spec.local else None  # non-local: whole maps
        return _loop(model, x, todo, cls, spec, options, progress, cut_to)
    if not spec.local:
        if "layer" in spec.needs(opts):
            raise ValueError(f"{spec.name} needs layer= (the module path of the layer whose activations it weighs)")
        geo = geometry or trace(model, x).geometry  # None: not local, one frame per backward pass
        return _cam_frames(model, x, out, todo, cls, spec, geo, chunk, progress, **opts)
    plan = spec.plan(model, x, None, **opts)
    if engine == "batched":
        return batched_frames(model, x, todo, cls, plan, chunk, progress)
    if engine in ("auto", "cone"):
        try:
            return cone_frames(model, x, todo, cls, plan, chunk * 8, progress)
        except NotCone as e:
            if engine == "cone":
                raise ValueError(f"engine='cone' cannot run this: {e}") from None
    if geometry is None and engine == "auto":
        geometry = trace(model, x).geometry
        if geometry is None:  # not local in time: every frame needs a whole backward pass
            return batched_frames(model, x, todo, cls, plan, chunk, progress)
    geo = geometry or chain_geometry(model, x)
    if out is None:
        with torch.no_grad():
            out = model(x)
        if out.shape[-1] != n_out:
            raise ValueError(f"classes must be one per output frame ({out.shape[-1]}), got {n_out}")
    return _colored(model, x, todo, cls, plan, geo, chunk, progress, out)


def _slice_along(value, x: torch.Tensor, start: int, stop: int):
    """An option's part for input frames ``[start, stop)``: tensors that follow the input's time axis
    (baselines, roots, bounds, noise) are sliced; everything else applies as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == x.dim() and value.shape[-1] == x.shape[-1] > 1:
        return value[..., start:stop]
    return value


def _nonlinear_why(spec: Method, opts: dict) -> str:
    """The options that make the method non-linear in its target (those whose default would not)."""
    return ", ".join(f"{k}={v!r}" for k, v in opts.items() if spec.linear_in_target({**opts, k: spec.defaults()[k]}))


def _loop(model, x, todo, cls, spec: Method, options: dict, progress, geo: FrameGeometry | None) -> Windows:
    """`attribute` per frame, each map cut to its window (the whole map without a geometry)."""
    parts = []
    for i, t in enumerate(todo):
        parts.append(cut(attribute(model, x, (int(cls[t]), t), spec.name, **options), [t], geo))
        if progress:
            progress(i + 1, len(todo))
    if not parts:
        return Windows(torch.zeros(0, *x.shape[1:-1], geo.rf if geo else x.shape[-1], dtype=x.dtype),
                       torch.zeros(0, dtype=torch.long), x.shape[-1])
    return Windows.join(parts, x.shape[-1])


def _colour_rows(todo: list[int], spacing: int) -> list[list[int]]:
    colours: dict[int, list[int]] = {}
    for t in todo:
        colours.setdefault(t % spacing, []).append(t)
    return [colours[c] for c in sorted(colours)]


def _expand(plan: m.Plan, n: int) -> m.Plan:
    """The plan of one utterance repeated over ``n`` rows (one per colour)."""
    def rep(t):
        return None if t is None else t.expand(n, *t.shape[1:])
    points = [m.Point(rep(p.input), p.weight, rep(p.multiplier)) for p in plan.points]
    return m.Plan(plan.backward, points, rep(plan.post), plan.finish, plan.rows)


def _colored(model, x, todo, cls, plan: m.Plan, geo: FrameGeometry, chunk: int, progress,
             out: torch.Tensor | None = None) -> Windows:
    if out is None:
        with torch.no_grad():
            out = model(x)
    n_in = x.shape[-1]
    result = torch.zeros(len(todo), *x.shape[1:-1], geo.rf, dtype=x.dtype, device=x.device)
    starts = torch.tensor([geo.window(t)[0] for t in todo], dtype=torch.long)
    where = {t: i for i, t in enumerate(todo)}
    rows = _colour_rows(todo, geo.spacing)
    for k in range(0, len(rows), max(1, chunk)):
        block = rows[k:k + chunk]
        selector = torch.cat([_selector(out, r, cls) for r in block])
        maps = m.evaluate(model, _expand(plan, len(block)), selector, plan.backward.relevance)
        for r, frames in enumerate(block):
            for t in frames:
                a0 = geo.window(t)[0]
                a, b = geo.window(t, n_in)
                result[where[t], ..., a - a0:b - a0] = maps[r, ..., a:b]
        if progress:
            progress(min(k + chunk, len(rows)), len(rows))
    return Windows(result, starts, n_in)


def _cam_frames(model, x, out, todo, cls, spec: Method, geo: FrameGeometry | None, chunk: int, progress, layer,
                relu: bool = True, mode: str = "linear") -> torch.Tensor:
    """Grad-CAM per frame: α_t,k = mean over positions of ∂y_t/∂A_k, from colour rows whose
    per-frame gradient cones at the layer are disjoint (``geo`` None, a model without locality:
    one frame per row); map_t = ReLU(Σ_k α_t,k A_k)."""
    module = find_layer(model, layer)
    rows = _colour_rows(todo, geo.spacing) if geo is not None else [[t] for t in todo]
    alphas: torch.Tensor | None = None  # (frames, channels), allocated once the layer's width is known
    where = {t: i for i, t in enumerate(todo)}
    acts = None
    for k in range(0, len(rows), max(1, chunk)):
        block = rows[k:k + chunk]
        n = len(block)
        grad_out = torch.cat([_selector(out, r, cls) for r in block])
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
    if spec.modulated_by:
        local = lookup(spec.modulated_by)
        plan = local.plan(model, x, None, **local.defaults())
        if geo is None:
            return batched_frames(model, x, todo, cls, plan, chunk, None) * maps
        guided = _colored(model, x, todo, cls, plan, geo, chunk, None, out)
        return guided.dense() * maps
    return maps.contiguous()
