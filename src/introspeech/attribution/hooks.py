"""The mechanism behind modified backward passes: forward hooks that swap in rule-driven backward
functions, BatchNorm folding (canonization) done functionally, the operations written between
modules (operations.py), and a guard that leaves the user's model exactly as it was (hooks
removed, modes restored), also when an exception is raised.

Nothing here mutates a parameter or buffer: a folded Conv+BatchNorm is evaluated with folded
weights computed on the fly, and the BatchNorm is bypassed by a hook.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..graph import BN_TYPES, LINEAR_TYPES, Traced, leaves, trace
from . import attention as att
from .attention import ModuleRule, OpRules
from .operations import Between
from .outputs import require_scores
from .propagate import ActivationFn, LinearRuleFn, linear_map, lrp_backward, recording
from .rules import ActivationRule, LinearRule

POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
PASS_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Flatten, nn.Unflatten, nn.ConstantPad1d, nn.ConstantPad2d,
              nn.ZeroPad2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
"""Layers whose ordinary gradient is also their LRP backward (reshapes, zero pads, max-pooling
winner-takes-all, dropout in eval mode)."""

__all__ = ["Backward", "BN_TYPES", "LINEAR_TYPES", "PASS_TYPES", "POOL_TYPES", "Traced", "leaves", "trace",
           "folded_params", "affine_params", "linear_fn", "lrp_backward", "modified", "preserved", "run_backward",
           "forward_graph"]


@dataclass(frozen=True)
class Backward:
    """How one backward pass is modified: a method's rules resolved on a traced model.

    ``rules``: module name → rule (none: the plain gradient). ``relevance``: LRP semantics (the
    target score is the initial relevance, additions between modules share relevance with
    ``addition``, constant factors pass it). ``activation``: the rule of functional ReLUs."""

    method: str
    rules: dict = field(default_factory=dict)
    traced: Traced | None = None
    canonize: bool = True
    relevance: bool = False
    activation: ActivationRule | None = None
    addition: LinearRule | None = None
    record: Callable | None = field(default=None, compare=False)  # (layer, r_in, r_out, r_bias) per ruled layer
    ops: OpRules | None = None  # rules of attention models' operations (LRP)

    def recording(self, record: Callable) -> Backward:
        """The same pass, reporting each ruled layer's relevance to ``record`` (see deltas.py)."""
        return dataclasses.replace(self, record=record)

    @property
    def plain(self) -> bool:
        return not self.rules and self.activation is None and not self.relevance

    def folds(self) -> dict[str, str]:
        """Linear layer name → the BatchNorm folded into it (with ``canonize``, ruled layers only)."""
        if not self.canonize or self.traced is None:
            return {}
        return {lin: bn for bn, lin in self.traced.folded.items() if isinstance(self.rules.get(lin), LinearRule)}


def affine_params(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scale and shift of an eval-mode BatchNorm: bn(x) = scale·x + shift."""
    inv = 1 / torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight * inv if bn.affine else inv
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    return scale, shift


def folded_params(linear: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of ``linear`` with a following eval-mode BatchNorm merged into it."""
    w, b = linear.weight, linear.bias
    if bn is None:
        return w, b
    scale, shift = affine_params(bn)
    w2 = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b0 = b if b is not None else torch.zeros_like(bn.running_mean)
    return w2, b0 * scale + shift


def linear_fn(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:
    """Functional form f(x, weight, bias) of a Linear/Conv layer, a BatchNorm (per-channel weight and
    bias: its scale and shift) or a parameter-free pool."""
    if isinstance(module, nn.Linear):
        return linear_map
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported "
                             "by LRP rules (only zero padding)")
        conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d

        def fn(x, w, b):
            return conv(x, w, b, module.stride, module.padding, module.dilation, module.groups)
        if isinstance(module, nn.Conv1d) and not isinstance(module.padding, str):
            fn.vjp = lambda s, w, shape: torch.nn.grad.conv1d_input(shape, w, s, module.stride, module.padding,
                                                                    module.dilation, module.groups)
        return fn
    if isinstance(module, BN_TYPES):
        def affine(x, w, b):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            out = x * w.reshape(shape)
            return out + b.reshape(shape) if b is not None else out
        return affine
    if isinstance(module, POOL_TYPES):
        return lambda x, w, b: module.forward(x)  # forward(), not __call__: no hooks (ours among them)
    raise TypeError(type(module).__name__)


def layer_params(module: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (weight, bias) a rule sees for a layer: folded with ``bn``, a BatchNorm's affine, none for pools."""
    if isinstance(module, POOL_TYPES):
        return None, None
    if isinstance(module, BN_TYPES):
        return affine_params(module)
    return folded_params(module, bn)


class _Bypass(torch.autograd.Function):
    """A folded BatchNorm: its output is the (already normalized) input, gradient passes."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()  # a copy, not a view: an in-place ReLU may follow

    @staticmethod
    def backward(ctx, grad):
        return grad


@contextlib.contextmanager
def preserved(model: nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """Run with the model in eval mode and restore every module's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    try:
        if eval_mode:
            model.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


@contextlib.contextmanager
def modified(model: nn.Module, spec: Backward) -> Iterator[Between]:
    """Forward hooks that make the backward pass follow ``spec`` (module name → rule); yields the
    mode to enter around the forward pass (operations between modules). With ``canonize``, each
    BatchNorm that directly follows a ruled Linear/Conv layer is folded into it. Hooks are always
    removed on exit."""
    modules = dict(spec.traced.order + spec.traced.units)
    bn_of = spec.folds()
    mode = Between(spec.method, spec.relevance, spec.activation, spec.addition, spec.ops)
    handles = []

    def linear_hook(name, rule):
        m = modules[name]
        bn = modules[bn_of[name]] if name in bn_of else None
        fn = linear_fn(m)

        def hook(mod, inp, out):
            w, b = layer_params(mod, bn)
            if bn is not None:
                with torch.no_grad():
                    value = fn(inp[0], w, b)
            else:
                value = out.detach()
            record = (lambda *sums: spec.record(name, *sums)) if spec.record is not None else None
            return LinearRuleFn.apply(inp[0], value, rule, fn, w, b, record)
        return hook

    def activation_hooks(m, rule):
        stash: list[torch.Tensor] = []

        def pre(mod, inp):  # an in-place activation must not overwrite the input the rule needs
            stash[:] = [inp[0]]
            return (inp[0].clone(),) + tuple(inp[1:]) if getattr(mod, "inplace", False) else None

        def post(mod, inp, out):
            return ActivationFn.apply(stash.pop(), out.detach(), rule)
        return pre, post

    def norm_hook(name, rule):
        def hook(mod, inp, out):
            if not mode.depends(inp[0]):
                return None
            record = (lambda *sums: spec.record(name, *sums)) if spec.record is not None else None
            return att.norm_module(mod, inp[0], rule, record)
        return hook

    def module_hook(rule: ModuleRule):
        def hook(mod, args, kwargs, out):
            if not any(mode.depends(t) for t in args) and not any(mode.depends(t) for t in kwargs.values()):
                return None
            return att.module_forward(rule, mod, args, kwargs, out, spec.ops, mode.depends)
        return hook

    def enter(mod, inp):
        mode.depth += 1

    def leave(mod, args, kwargs, out):
        mode.depth -= 1
        if any(mode.depends(t) for t in args) or any(mode.depends(t) for t in kwargs.values()):
            mode.mark(out)

    try:
        for name, rule in spec.rules.items():
            m = modules[name]
            if isinstance(rule, LinearRule) and isinstance(m, att.NORM_TYPES):
                handles.append(m.register_forward_hook(norm_hook(name, rule)))
            elif isinstance(rule, LinearRule):
                handles.append(m.register_forward_hook(linear_hook(name, rule)))
            elif rule == att.OPEN:
                continue
            elif isinstance(rule, ModuleRule):
                handles.append(m.register_forward_hook(module_hook(rule), with_kwargs=True))
            else:
                pre, post = activation_hooks(m, rule)
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        for name in bn_of.values():
            handles.append(modules[name].register_forward_hook(lambda m, inp, out: _Bypass.apply(inp[0])))
        units = [modules[n] for n, r in spec.rules.items() if isinstance(r, ModuleRule) and r.unit]
        opened = {n for n, r in spec.rules.items() if r == att.OPEN}
        for m in [m for n, m in leaves(model) if n not in opened] + units:
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave, with_kwargs=True))
        with recording(spec.record):
            yield mode
    finally:
        for h in handles:
            h.remove()


def forward_graph(model: nn.Module, x: torch.Tensor, spec: Backward) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass whose graph follows ``spec``'s rules: (the input as a leaf that requires
    grad, the output). Hooks are gone when it returns; the graph keeps what the rules need."""
    x = x.detach().requires_grad_(True)
    if spec.plain:
        with torch.enable_grad():
            out = model(x)
    else:
        with modified(model, spec) as mode, torch.enable_grad():
            mode.mark(x)
            with mode:
                out = model(x)
    return x, require_scores(out)


def run_backward(model: nn.Module, x: torch.Tensor, selector: torch.Tensor, spec: Backward,
                 scale: bool | None = None) -> torch.Tensor:
    """Input gradient (relevance, with rules) of Σ selector ⊙ f(x), on the modified backward pass.

    ``selector`` is shaped like the output (a one-hot choice of scores, or any output gradient).
    ``scale`` (default: ``spec.relevance``) multiplies it by the output first: the scores themselves
    are the initial relevance."""
    scale = spec.relevance if scale is None else scale
    x, out = forward_graph(model, x, spec)
    if out.shape != selector.shape:
        raise ValueError(f"output gradient of shape {tuple(selector.shape)} for outputs {tuple(out.shape)}")
    g = selector.to(out) * out.detach() if scale else selector.to(out)
    (grad,) = torch.autograd.grad(out, x, g)
    return grad
