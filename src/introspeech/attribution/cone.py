"""Fast path of `attribute_frames` for graphs of 1-D layers: a backward pass restricted to each
frame's cone.

For a model made of Conv1d (grouped, dilated, strided, numeric or ``"same"`` padding),
BatchNorm1d, ReLU (modules or functional), ConstantPad1d, Dropout and Identity, joined as a chain
or with additions of branches (the Wav2Letter, Jasper and QuartzNet families), each point of a
method's `Plan` is run forward once while the data flow is recorded; then the backward signal of
many frames is propagated together through that graph, each frame carrying only the window of
positions that can reach it (1 position at the output, the receptive field at the input). Where
branches meet again (the input of a residual block), their windows are merged. Every step is the
linear map the rule-driven autograd backward applies for the same `Backward` (the same rules, the
same BatchNorm folding, transposed convolutions with the rule's modified weights, normalizers cut
from one full-length forward of each rule term, additions shared by the addition rule), so the
result equals the per-frame computation; only the work outside the cones is skipped. A layer,
operation or rule this engine cannot follow raises `NotCone`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..graph import _window_padding, leaves
from .hooks import Backward, affine_params, folded_params
from .methods import Plan
from .operations import ADD_OPS, PASS_OPS, RELU_OPS
from .rules import ActivationRule, DeconvReLU, Gradient, GuidedReLU, LinearRule, Pass
from .windows import Windows

SUPPORTED = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.ConstantPad1d, nn.Dropout, nn.Identity)


class NotCone(ValueError):
    """The model or the method's backward pass is outside what the cone engine follows."""


@dataclass
class Node:
    """One recorded operation: its kind, the module (if any), input and output keys, input values."""

    kind: str  # conv | bn | relu | pad | skip | add
    name: str
    module: nn.Module | None
    inputs: list[int]
    output: int
    values: list[torch.Tensor] = field(default_factory=list)


class _Recorder(TorchFunctionMode):
    """Records leaf-module calls (via hooks) and the additions / ReLUs written between modules."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.depth = 0
        self.nodes: list[Node] = []
        self.key: dict[int, int] = {id(x): 0}
        self.keep = [x]
        self.next = 1

    def protect(self, t: torch.Tensor) -> torch.Tensor:
        """Copy-on-write before ``t`` is changed in place: the nodes that already read it keep the
        value they read (a snapshot), and so does the caller."""
        snapshot = t.clone()
        for node in self.nodes:
            node.values = [snapshot if v is t else v for v in node.values]
        return snapshot

    def produce(self, t: torch.Tensor) -> int:
        k = self.next
        self.next += 1
        self.key[id(t)] = k
        self.keep.append(t)
        return k

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth > 0:
            return func(*args, **kwargs)
        flat = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and id(t) in self.key]
        name = getattr(func, "__name__", str(func))
        if not flat:
            return func(*args, **kwargs)
        ins = [self.key[id(t)] for t in flat]
        in_place = name.endswith("_") or name.startswith("__i")  # changes its first argument
        values = [self.protect(t) if in_place and k == 0 else t for k, t in enumerate(flat)]
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            return out  # sizes, shapes
        if name in ADD_OPS and len(flat) == 2 and "alpha" not in kwargs and out.shape == flat[0].shape == flat[1].shape:
            self.nodes.append(Node("add", name, None, ins, self.produce(out), values))
        elif name in RELU_OPS and len(flat) == 1:
            self.nodes.append(Node("relu", name, None, ins, self.produce(out), values))
        elif name in PASS_OPS and name in ("contiguous", "clone", "dropout") and len(flat) == 1:
            self.nodes.append(Node("skip", name, None, ins, self.produce(out), values))
        else:
            raise NotCone(f"operation {name!r} between modules")
        return out


def record(model: nn.Module, x: torch.Tensor) -> tuple[list[Node], int, torch.Tensor]:
    """The graph of one forward pass (nodes in execution order), the output's key, the output."""
    rec = _Recorder(x)
    handles = []
    pending: dict[int, tuple[list[int], list[torch.Tensor]]] = {}

    def pre(m, inp):
        rec.depth += 1
        known = [t for t in inp if isinstance(t, torch.Tensor) and id(t) in rec.key]
        if len(known) != 1 or len(inp) != 1:
            raise NotCone(f"layer {type(m).__name__} does not take one traced tensor")
        t = known[0]
        pending[id(m)] = ([rec.key[id(t)]], [rec.protect(t) if getattr(m, "inplace", False) else t])

    def post(name):
        def fn(m, inp, out):
            rec.depth -= 1
            ins, values = pending.pop(id(m))
            if not isinstance(m, SUPPORTED):
                raise NotCone(f"layer {name!r} ({type(m).__name__})")
            kind = {nn.Conv1d: "conv", nn.BatchNorm1d: "bn", nn.ReLU: "relu", nn.ConstantPad1d: "pad"}.get(type(m), "skip")
            rec.nodes.append(Node(kind, name, m, ins, rec.produce(out), values))
        return fn

    try:
        for name, m in leaves(model):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post(name)))
        with torch.no_grad(), rec:
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or id(out) not in rec.key:
        raise NotCone("the output is not a tensor computed from the input")
    return rec.nodes, rec.key[id(out)], out


Recording = tuple[list[Node], int, torch.Tensor]
_REUSABLE: ContextVar[tuple | None] = ContextVar("introspeech_cone_recording", default=None)


@contextlib.contextmanager
def reusing(model: nn.Module, x: torch.Tensor, recording: Recording) -> Iterator[None]:
    """Inside this block the cone engine explains input ``x`` of ``model`` from ``recording`` (what
    `record` gave for that same forward pass) instead of running the forward pass again: a caller
    that has just run it (a profile pass that captured the layers) saves one forward pass. Another
    input, or ``x`` changed in place since, is recorded afresh."""
    token = _REUSABLE.set((model, x, x._version, recording))
    try:
        yield
    finally:
        _REUSABLE.reset(token)


def _recorded(model: nn.Module, x: torch.Tensor) -> Recording:
    held = _REUSABLE.get()
    if held is not None:
        m, x0, version, recording = held
        if (m is model and x.data_ptr() == x0.data_ptr() and x.shape == x0.shape and x.stride() == x0.stride()
                and x.dtype == x0.dtype and x.device == x0.device and x0._version == version):
            return recording
    return record(model, x)


@dataclass
class Step:
    """A node with what its backward needs: the rule, (folded) weights, normalizers, masks."""

    node: Node
    kind: str  # conv | scale | relu | pad | skip | add
    rule: LinearRule | ActivationRule | None = None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    conv: tuple[int, int, int, int, int] = (1, 0, 1, 1, 1)  # stride, left padding, dilation, kernel, groups
    norms: list = field(default_factory=list)  # conv/add: per group (stabilized Z_g, mask or None); relu: [mask]


def _norms(rule: LinearRule, h, w, b, conv) -> list:
    out = []
    for group in rule.groups(h):
        z = sum(t.scale * conv(t.input(h), t.weight(w), t.bias(b) if (b is not None and t.bias) else None)
                for t in group.terms)
        out.append((rule.stabilize(z), group.mask(conv(h, w, b)) if group.sign else None))
    return out


def gradient_folds(nodes: list[Node], out_key: int) -> dict[str, str]:
    """Conv name → the BatchNorm that alone consumes its output (the condition `graph.trace` applies):
    for a gradient, folding such a BatchNorm's scale into the weights is the same linear map."""
    uses: dict[int, int] = {}
    for node in nodes:
        for k in node.inputs:
            uses[k] = uses.get(k, 0) + 1
    conv_of = {node.output: node.name for node in nodes if node.kind == "conv"}
    return {conv_of[n.inputs[0]]: n.name for n in nodes if n.kind == "bn" and n.inputs[0] in conv_of
            and uses[n.inputs[0]] == 1 and n.inputs[0] != out_key}


def build(nodes: list[Node], spec: Backward, out_key: int) -> list[Step]:
    """Steps in execution order; BatchNorms folded as ``spec`` folds them (for gradients: always,
    the gradient through an eval-mode BatchNorm being its scale)."""
    folds = spec.folds() if spec.relevance else gradient_folds(nodes, out_key)
    folded_bns = set(folds.values())
    modules = {node.name: node.module for node in nodes if node.module is not None}
    steps = []
    with torch.no_grad():
        for node in nodes:
            rule = spec.rules.get(node.name) if node.module is not None else None
            h = node.values[0]
            if node.kind == "conv":
                m = node.module
                if m.padding_mode != "zeros":
                    raise NotCone(f"layer {node.name!r}: padding_mode={m.padding_mode!r}")
                if rule is not None and not isinstance(rule, LinearRule):
                    raise NotCone(f"layer {node.name!r} has the rule {rule!r}")
                w, b = folded_params(m, modules[folds[node.name]] if node.name in folds else None)
                w, b = w.detach(), None if b is None else b.detach()
                step = Step(node, "conv", rule, w, b, (m.stride[0], _window_padding(m), m.dilation[0], m.kernel_size[0],
                                                       m.groups))
                if rule is not None:
                    step.norms = _norms(rule, h, w, b, lambda t, wk, bk, m=m: F.conv1d(
                        t, wk, bk, m.stride, m.padding, m.dilation, m.groups))
            elif node.kind == "bn":
                if node.name in folded_bns:
                    step = Step(node, "skip")
                else:
                    scale, shift = (t.detach() for t in affine_params(node.module))
                    if isinstance(rule, LinearRule):  # its own rule: a depthwise 1×1 convolution
                        c = scale.shape[0]
                        step = Step(node, "conv", rule, scale.reshape(c, 1, 1), shift, (1, 0, 1, 1, c))
                        step.norms = _norms(rule, h, step.weight, shift, lambda t, wk, bk, c=c: F.conv1d(t, wk, bk, groups=c))
                    else:
                        step = Step(node, "scale", weight=scale)
            elif node.kind == "relu":
                act = rule if isinstance(rule, ActivationRule) else (spec.activation or Gradient)
                if act not in (Pass, DeconvReLU, Gradient, GuidedReLU):
                    raise NotCone(f"activation rule {act.name!r}")
                step = Step(node, "relu", act, norms=[(h > 0).to(h.dtype)])
            elif node.kind == "pad":
                if node.module.value != 0:
                    raise NotCone(f"layer {node.name!r}: padding value {node.module.value}")
                step = Step(node, "pad", conv=(1, node.module.padding[0], 1, 1, 1))
            elif node.kind == "add":
                step = Step(node, "add", spec.addition if spec.relevance else None)
                if step.rule is not None:
                    a, c = node.values
                    step.norms = _norms(step.rule, torch.stack([a, c]), None, None, lambda s, wk, bk: s.sum(0))
            else:
                step = Step(node, "skip")
            steps.append(step)
    return steps


def gather(full: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    """Windows ``(n, C, width)`` of a ``(1, C, T)`` tensor at per-frame starts; zero outside [0, T)."""
    t = full.shape[-1]
    lo, hi = int(starts.min()), int(starts.max()) + width
    left, right = max(0, -lo), max(0, hi - t)
    padded = F.pad(full[0], (left, right)) if left or right else full[0]
    return padded.unfold(-1, width, 1)[:, starts + left].permute(1, 0, 2)


def _mask_outside(r: torch.Tensor, starts: torch.Tensor, t: int) -> torch.Tensor:
    """Zero the window positions that fall outside [0, t) (only frames at the edges have any)."""
    edge = (starts < 0) | (starts + r.shape[-1] > t)
    if not bool(edge.any()):
        return r
    rows = torch.nonzero(edge).flatten()
    idx = starts[rows, None] + torch.arange(r.shape[-1], device=r.device)[None, :]
    r = r.clone()
    r[rows] *= ((idx >= 0) & (idx < t)).to(r.dtype)[:, None, :]
    return r


def _divide(r, z_full, mask_full, starts):
    z = gather(z_full, starts, r.shape[-1])  # stabilized; zero only outside the sequence
    s = r / torch.where(z == 0, torch.ones_like(z), z) * (z != 0)  # as lrp_backward
    return s * gather(mask_full, starts, r.shape[-1]) if mask_full is not None else s


def _transposed(r: torch.Tensor, w: torch.Tensor, stride: int, dilation: int, groups: int) -> torch.Tensor:
    """``conv_transpose1d``; a one-position signal (the top of every cone) as one matrix product,
    which is faster there than the convolution routine (equal, tested)."""
    if r.shape[-1] == 1 and dilation == 1 and groups == 1:
        return (r[:, :, 0] @ w.reshape(w.shape[0], -1)).reshape(r.shape[0], w.shape[1], w.shape[2])
    return F.conv_transpose1d(r, w, stride=stride, dilation=dilation, groups=groups)


def _conv_back(step: Step, r: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s, p, d, k, g = step.conv
    new_starts = starts * s - p
    if step.rule is None:  # plain gradient
        return _transposed(r, step.weight, s, d, g), new_starts
    x = step.node.values[0]
    width = (r.shape[-1] - 1) * s + d * (k - 1) + 1
    total = torch.zeros(r.shape[0], x.shape[1], width, dtype=r.dtype, device=r.device)
    for group, (z, mask) in zip(step.rule.groups(x), step.norms):
        sg = _divide(r, z, mask, starts)
        for t in group.terms:
            xk = gather(t.input(x), new_starts, width)
            total += group.coef * t.scale * xk * F.conv_transpose1d(sg, t.weight(step.weight), stride=s, dilation=d,
                                                                    groups=g)
    return total, new_starts


def _add_back(step: Step, r: torch.Tensor, starts: torch.Tensor) -> list[torch.Tensor]:
    if step.rule is None:
        return [r, r]
    stacked = torch.stack(step.node.values)
    parts = [torch.zeros_like(r), torch.zeros_like(r)]
    for group, (z, mask) in zip(step.rule.groups(stacked), step.norms):
        sg = _divide(r, z, mask, starts)
        for t in group.terms:
            xt = t.input(stacked)
            for i in range(2):
                parts[i] = parts[i] + group.coef * t.scale * gather(xt[i], starts, r.shape[-1]) * sg
    return parts


def _merge(old, new):
    """Sum of two window sets of one tensor (branches that met); the union window holds both.
    Each set is ``(windows, starts, length)``, ``length`` not None when positions outside the
    tensor's ``[0, length)`` may still hold values (see `backward_frames`)."""
    if old is None:
        return new
    (r1, s1, n1), (r2, s2, n2) = old, new
    lo = torch.minimum(s1, s2)
    d1, d2 = s1 - lo, s2 - lo
    if bool((d1 != d1[0]).any()) or bool((d2 != d2[0]).any()):
        raise NotCone("branch windows move differently along time")
    a, b = int(d1[0]), int(d2[0])
    width = max(a + r1.shape[-1], b + r2.shape[-1])
    return (F.pad(r1, (a, width - a - r1.shape[-1])) + F.pad(r2, (b, width - b - r2.shape[-1])), lo,
            n1 if n1 is not None else n2)


def _cleaned(r: torch.Tensor, starts: torch.Tensor, length: int | None) -> torch.Tensor:
    return r if length is None else _mask_outside(r, starts, length)


def backward_frames(steps: list[Step], out_key: int, seeds: torch.Tensor, frames: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate per-frame output signals ``seeds`` (n, C_out) at output ``frames`` (n,) down the
    graph. Returns input windows ``(n, C_in, width)`` and their start positions.

    Window positions outside a tensor (its zero padding) must carry nothing. They are zeroed only
    where it matters: before a transposed convolution spreads them inwards, and at the input.
    Between those points every step is position-wise and keeps a zero a zero, and a ReLU's mask
    (zero outside) or a rule's normalizer clears them anyway, so a signal carries the length to
    clear it against only while it may hold such values."""
    signal: dict[int, tuple[torch.Tensor, torch.Tensor, int | None]] = {
        out_key: (seeds[:, :, None], frames.clone(), None)}
    for step in reversed(steps):
        node = step.node
        if node.output not in signal:
            continue
        r, starts, dirty = signal.pop(node.output)
        t_in = node.values[0].shape[-1]
        if step.kind == "conv":
            r, starts = _conv_back(step, _cleaned(r, starts, dirty), starts)
            dirty = t_in
        elif step.kind == "scale":
            r = r * step.weight[None, :, None]
        elif step.kind == "relu":
            if step.rule is DeconvReLU:
                r = r.clamp(min=0)
            elif step.rule is not Pass:
                mask = gather(step.norms[0], starts, r.shape[-1])  # zero outside the tensor
                r = (r.clamp(min=0) if step.rule is GuidedReLU else r) * mask
                dirty = None
        elif step.kind == "pad":
            starts = starts - step.conv[1]
            dirty = t_in  # what reached the padding must not reach the input
        if step.kind == "add":
            for key, part in zip(node.inputs, _add_back(step, r, starts)):
                signal[key] = _merge(signal.get(key), (part, starts, dirty if step.rule is None else None))
        else:
            signal[node.inputs[0]] = _merge(signal.get(node.inputs[0]), (r, starts, dirty))
    if 0 not in signal:
        raise NotCone("no signal reached the input")
    r, starts, dirty = signal[0]
    return _cleaned(r, starts, dirty), starts


def cone_frames(model: nn.Module, x: torch.Tensor, todo: list[int], cls: torch.Tensor, plan: Plan, chunk: int,
                progress=None) -> Windows:
    """`attribute_frames` on the cone engine (see the module docstring); ``chunk`` frames per step;
    each map on its frame's cone at the input."""
    if x.dim() != 3:
        raise NotCone("the cone engine needs (batch, channels, time) inputs")
    frames = torch.as_tensor(todo, device=x.device)
    n_in = x.shape[-1]
    total, starts = None, None
    for k_point, point in enumerate(plan.points):
        nodes, out_key, out = _recorded(model, point.input.detach())
        if out.dim() != 3 or out.shape[-1] != cls.shape[0]:
            raise ValueError(f"classes must be one per output frame ({out.shape[-1]}), got {cls.shape[0]}")
        steps = build(nodes, plan.backward, out_key)
        seeds = torch.zeros(len(todo), out.shape[1], dtype=x.dtype, device=x.device)
        seeds[torch.arange(len(todo)), cls[frames]] = out[0, cls[frames], frames] if plan.backward.relevance else 1.0
        parts, st = [], []
        with torch.no_grad():
            for k in range(0, len(todo), max(1, chunk)):
                r, s = backward_frames(steps, out_key, seeds[k:k + chunk], frames[k:k + chunk])
                parts.append(r)
                st.append(s)
        width = max(p.shape[-1] for p in parts)
        r, starts = torch.cat([F.pad(p, (0, width - p.shape[-1])) for p in parts]), torch.cat(st)
        if point.multiplier is not None:
            r = r * gather(point.multiplier, starts, r.shape[-1])
        if point.weight != 1.0:
            r = r * point.weight
        total = r if total is None else total + r
        if progress:
            progress(k_point + 1, len(plan.points))
    if plan.post is not None:
        total = total * gather(plan.post, starts, total.shape[-1])
    total = plan.finish(total) if plan.finish is not None else total
    cols = starts[:, None] + torch.arange(total.shape[-1], device=starts.device)[None]
    outside = ((cols < 0) | (cols >= n_in)).reshape(len(todo), *([1] * (total.dim() - 2)), total.shape[-1])
    return Windows(total.masked_fill(outside, 0), starts, n_in)
