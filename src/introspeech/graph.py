"""What one forward pass of a model does: the leaf modules in execution order, which BatchNorm can
be folded into the layer before it, whether the leaves form a plain chain, and the frame geometry
(receptive field, stride, offset along the last, time, axis) of the output and of every module's
output. `FrameGeometry` is the one geometry type of introspeech (the built-in model computes it
from its config, any other model gets it here).

Everything is recorded by hooks on the leaf modules and by a `TorchFunctionMode` that sees the
operations written between modules (a residual ``x + y``, a functional ``F.relu``), so graphs that
are not ``nn.Sequential`` are traced exactly. Nothing is changed in the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.parametrize import is_parametrized
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

LINEAR_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
WINDOW_TYPES = (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
PAD_TYPES = (nn.ConstantPad1d, nn.ConstantPad2d, nn.ZeroPad2d)
POINTWISE_TYPES = BN_TYPES + (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Hardtanh,
                              nn.ReLU6, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
"""Leaves that act on each position (frame) separately."""
UNIT_TYPES = (nn.MultiheadAttention,)
"""Modules with children that a modified backward pass treats as one operation (their children
are not called: ``nn.MultiheadAttention`` uses its ``out_proj`` weights directly)."""

ELEMENTWISE_OPS = {
    "add", "sub", "mul", "div", "true_divide", "neg", "relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_min",
    "abs", "exp", "log", "leaky_relu", "gelu", "elu", "silu", "hardtanh", "dropout", "__add__", "__radd__", "__iadd__",
    "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "add_",
    "mul_", "__neg__", "maximum", "minimum",
}
RESHAPE_OPS = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous", "clone", "to",
               "float", "double", "half", "type", "cat", "concat", "stack", "chunk", "split", "__getitem__",
               "detach", "view_as", "reshape_as", "unbind"}
"""Operations between modules that keep the last axis where it is (checked on the shapes)."""


@dataclass(frozen=True)
class FrameGeometry:
    """Frame t looks at input frames ``[t*stride + offset, t*stride + offset + rf)``.

    ``offset`` is negative at the utterance start (zero padding); `window` clips to the input when
    its length is given."""

    rf: int
    stride: int
    offset: int

    def window(self, t: int, n_input: int | None = None) -> tuple[int, int]:
        a = t * self.stride + self.offset
        if n_input is None:
            return a, a + self.rf
        return max(a, 0), min(a + self.rf, n_input)

    @property
    def spacing(self) -> int:
        """Frames this far apart have disjoint windows: the number of colours."""
        return math.ceil(self.rf / self.stride)

    def centre(self, t: int) -> float:
        """Input frame at the centre of frame t's receptive field."""
        return t * self.stride + self.offset + (self.rf - 1) / 2

    def frames_within(self, n: int) -> int:
        """How many frames (from 0) are centred on one of ``n`` input frames: the rest of a layer's
        frames stand for padding a model added itself (Whisper's 30 s windows)."""
        return max(0, math.floor((n - 1 - self.offset - (self.rf - 1) / 2) / self.stride) + 1)

    def union(self, other: FrameGeometry) -> FrameGeometry | None:
        """The window covering both (branches added together); None if their strides differ."""
        if self.stride != other.stride:
            return None
        lo = min(self.offset, other.offset)
        return FrameGeometry(max(self.offset + self.rf, other.offset + other.rf) - lo, self.stride, lo)


@dataclass
class Traced:
    """Leaf modules in execution order, the Linear/Conv layer each foldable BatchNorm follows, and
    the output's frame geometry (or why it has none)."""

    order: list[tuple[str, nn.Module]]
    folded: dict[str, str]  # batchnorm name -> linear layer name
    chain: bool = False  # every leaf consumed the previous leaf's output, the last one gave the output
    geometry: FrameGeometry | None = None
    not_local: str = ""  # why the output has no frame geometry
    operations: list[str] = field(default_factory=list)  # operations between modules on traced tensors
    modules: dict[str, tuple[FrameGeometry | None, tuple[int, ...]]] = field(default_factory=dict)
    """Every module that ran (leaves and containers): its output's geometry (None: not local) and shape."""
    output_shape: tuple[int, ...] = ()  # the model's output (empty: not a tensor)
    units: list[tuple[str, nn.Module]] = field(default_factory=list)
    """Containers that rules treat as one operation (``UNIT_TYPES``: attention), in execution order."""

    def frame_geometry(self) -> FrameGeometry:
        if self.geometry is None:
            raise ValueError(f"the model is not local along its last axis ({self.not_local}): pass geometry= "
                             "explicitly or use attribute() per frame")
        return self.geometry


def leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Modules without children, in registration order; a parametrized module (weight norm) is a
    leaf, its parametrizations are not (they compute its weight, not its output)."""
    inside: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        children = [n for n, _ in m.named_children()]
        if is_parametrized(m) and children == ["parametrizations"]:
            inside.append(name)
            yield name, m
        elif not children:
            yield name, m


def _last(v):
    return v[-1] if isinstance(v, tuple) else v


def _window_padding(m: nn.Module) -> int:
    """Left padding along the last axis (numeric, ``"same"`` or ``"valid"``)."""
    p = m.padding
    if isinstance(p, str):
        if p == "valid":
            return 0
        return _last(m.dilation) * (_last(m.kernel_size) - 1) // 2  # PyTorch's "same": the extra zero goes right
    return _last(p)


def module_geometry(m: nn.Module, g: FrameGeometry) -> tuple[FrameGeometry | None, str]:
    """The geometry of a leaf's output from its input's, or None and why."""
    if isinstance(m, WINDOW_TYPES):
        k, s = _last(m.kernel_size), _last(m.stride)
        d = 1 if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)) else _last(m.dilation)
        p = _window_padding(m)
        return FrameGeometry(g.rf + d * (k - 1) * g.stride, g.stride * s, g.offset - p * g.stride), ""
    if isinstance(m, PAD_TYPES):
        return FrameGeometry(g.rf, g.stride, g.offset - m.padding[0] * g.stride), ""
    if isinstance(m, POINTWISE_TYPES) or (isinstance(m, (nn.Softmax, nn.LogSoftmax)) and m.dim not in (-1, None)):
        return g, ""
    return None, f"layer {type(m).__name__} mixes positions or is not known to act per position"


class _Recorder(TorchFunctionMode):
    """Sees every operation; those outside leaf modules are recorded against the traced tensors."""

    def __init__(self, state: _TraceState):
        super().__init__()
        self.s = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.s.depth == 0:
            self.s.operation(func, args, kwargs or {}, out)
        return out


class _TraceState:
    def __init__(self, x: torch.Tensor, positional: bool = False):
        self.positional = positional  # a layer that keeps the number of frames keeps their places
        self.depth = 0
        self.keep: list[torch.Tensor] = [x]  # keeps traced tensors alive: ids are not reused
        self.geo: dict[int, FrameGeometry | None] = {id(x): FrameGeometry(1, 1, 0)}
        self.why: dict[int, str] = {}
        self.uses: dict[int, int] = {}
        self.ops: list[str] = []
        self.ndim = x.dim()

    def known(self, t) -> bool:
        return isinstance(t, torch.Tensor) and id(t) in self.geo

    def set(self, t: torch.Tensor, g: FrameGeometry | None, why: str = "") -> None:
        self.keep.append(t)
        self.geo[id(t)] = g
        if g is None:
            self.why[id(t)] = why

    def operation(self, func, args, kwargs, out) -> None:
        ins = [t for t in tree_flatten((args, kwargs))[0] if self.known(t)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not ins or not outs:
            return
        name = getattr(func, "__name__", str(func))
        if self.positional and name in ELEMENTWISE_OPS:  # a value broadcast along time moves no place
            wide = [t for t in ins if t.dim() and t.shape[-1] > 1]
            ins = wide if wide and all(o.dim() and o.shape[-1] == wide[0].shape[-1] for o in outs) else ins
        self.ops.append(name)
        for t in ins:
            self.uses[id(t)] = self.uses.get(id(t), 0) + 1
        geos = [self.geo[id(t)] for t in ins]
        bad = next((self.why[id(t)] for t in ins if self.geo[id(t)] is None), "")
        g: FrameGeometry | None = None
        why = bad
        if not bad:
            size = ins[0].shape[-1] if ins[0].dim() else None
            same = all(o.dim() and o.shape[-1] == size for o in outs) and all(t.shape[-1] == size for t in ins)
            if name in ELEMENTWISE_OPS and same:
                g = geos[0]
                for other in geos[1:]:
                    g = g.union(other) if g is not None else None
                why = "" if g is not None else f"operation {name} adds branches of different strides"
            elif name in RESHAPE_OPS and same and not _moves_last_axis(name, args, kwargs, ins[0].dim()):
                g = geos[0] if len(set(geos)) == 1 else None
                why = "" if g is not None else f"operation {name} joins branches of different geometry"
            elif name == "pad" and same is False and _constant_pad(args, kwargs):
                left = args[1][0] if len(args) > 1 else kwargs["pad"][0]
                g = FrameGeometry(geos[0].rf, geos[0].stride, geos[0].offset - left * geos[0].stride)
            else:
                why = f"operation {name} between modules changes or moves the last axis"
                if self.positional and same and len(set(geos)) == 1:
                    g, why = geos[0], ""
        for o in outs:
            self.set(o, g, why)


def _moves_last_axis(name: str, args, kwargs, ndim: int) -> bool:
    dims = [a for a in list(args[1:]) + list(kwargs.values()) if isinstance(a, int)]
    if name in ("cat", "concat", "stack"):
        d = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return d in (-1, ndim - 1) or (name == "stack" and d in (-1, ndim))
    if name in ("chunk", "split", "unbind", "squeeze", "unsqueeze", "flatten", "unflatten"):
        return any(d in (-1, ndim - 1) for d in dims)
    return False


def _constant_pad(args, kwargs) -> bool:
    """A pad whose new positions are zeros or copies of positions inside the same receptive field
    (reflect, replicate: the geometry is that of a zero pad)."""
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    return mode in ("constant", "reflect", "replicate")


def trace(model: nn.Module, x: torch.Tensor, positional: bool = False) -> Traced:
    """Run the model once (no grad) recording leaves, BatchNorm pairs, chain structure and geometry.

    ``positional``: the geometry of the places frames stand for, not of what they see: a layer or
    operation that keeps the number of frames (a normalization over time, attention along the last
    axis) keeps their places (what gives a layer after attention its nominal geometry).

    A BatchNorm is foldable into the Conv/Linear layer before it when it consumes that layer's output
    and nothing else does (else folding would change what the other consumers see)."""
    s = _TraceState(x, positional)
    order: list[tuple[str, nn.Module]] = []
    produced: dict[int, str] = {}  # output id -> linear layer name
    pending: list[tuple[str, int]] = []  # (batchnorm, input id)
    last: list = [x, True]  # previous leaf output, chain so far
    handles = []

    seen: dict[str, tuple[FrameGeometry | None, tuple[int, ...]]] = {}

    units: list[tuple[str, nn.Module]] = []

    def container(name):
        def fn(m, inp, out):
            if isinstance(m, UNIT_TYPES):
                units.append((name, m))
            if isinstance(out, torch.Tensor) and name:
                seen[name] = (s.geo.get(id(out)), tuple(out.shape))
        return fn

    def pre(m, inp):
        s.depth += 1
        for t in inp:
            if s.known(t):
                s.uses[id(t)] = s.uses.get(id(t), 0) + 1

    def post(name):
        def fn(m, inp, out):
            s.depth -= 1
            if not inp or inp[0] is not last[0]:
                last[1] = False
            last[0] = out
            order.append((name, m))
            if isinstance(m, BN_TYPES) and inp and id(inp[0]) in produced:
                pending.append((name, id(inp[0])))
            if isinstance(m, LINEAR_TYPES):
                produced[id(out)] = name
            if isinstance(out, torch.Tensor):
                src = s.geo.get(id(inp[0]), None) if inp and s.known(inp[0]) else None
                if inp and s.known(inp[0]) and src is None:
                    s.set(out, None, s.why[id(inp[0])])
                elif src is not None:
                    g, why = module_geometry(m, src)
                    if g is None and s.positional and out.dim() == inp[0].dim() and out.shape[-1] == inp[0].shape[-1]:
                        g, why = src, ""
                    s.set(out, g, f"{why} ({name!r})" if why else "")
                else:
                    s.set(out, None, f"layer {name!r} does not take the traced input")
                seen[name] = (s.geo[id(out)], tuple(out.shape))
        return fn

    leaf_names = {name for name, _ in leaves(model)}
    try:
        for name, m in leaves(model):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post(name)))
        for name, m in model.named_modules():
            if name not in leaf_names:
                handles.append(m.register_forward_hook(container(name)))
        with torch.no_grad(), _Recorder(s):
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    folded = {bn: produced[src] for bn, src in pending if s.uses.get(src, 0) == 1 and src != id(final)}
    geo = s.geo.get(id(final)) if isinstance(final, torch.Tensor) else None
    why = s.why.get(id(final), "the output is not a tensor computed from the input")
    chain = bool(order) and last[1] and final is last[0] and not s.ops
    shape = tuple(final.shape) if isinstance(final, torch.Tensor) else ()
    return Traced(order, folded, chain, geo, "" if geo is not None else why, s.ops, seen, shape, units)


def output_length_fn(model: nn.Module, channels: int, stride: int, dtype: torch.dtype = torch.float32,
                     probes: tuple[int, ...] = (97, 98, 99, 100, 101, 150, 257, 400)):
    """Output frames as a function of input frames, measured: n_out = ⌊(n + c) / stride⌋ + d fitted on
    forward passes of probe lengths and checked on all of them (for CTC lengths of padded batches).
    Raises when no such rule fits (the model is not a strided convolution stack)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            seen = {n: int(model(torch.zeros(1, channels, n, dtype=dtype)).shape[-1]) for n in probes}
    finally:
        model.train(was)
    for c in range(stride):
        d = seen[probes[0]] - (probes[0] + c) // stride
        if all((n + c) // stride + d == m for n, m in seen.items()):
            def length(n, c=c, d=d):
                return torch.div(n + c, stride, rounding_mode="floor") + d if isinstance(n, torch.Tensor) \
                    else (n + c) // stride + d
            return length
    raise ValueError(f"output lengths {seen} follow no rule n_out = (n + c) // {stride} + d")
