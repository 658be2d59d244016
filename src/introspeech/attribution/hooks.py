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
from .operations import ActivationFn, Between
from .rules import ActivationRule, LinearRule

POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
PASS_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Flatten, nn.Unflatten, nn.ConstantPad1d, nn.ConstantPad2d,
              nn.ZeroPad2d, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
"""Layers whose ordinary gradient is also their LRP backward (reshapes, zero pads, max-pooling
winner-takes-all, dropout in eval mode)."""

__all__ = ["Backward", "BN_TYPES", "LINEAR_TYPES", "PASS_TYPES", "POOL_TYPES", "Traced", "leaves", "trace",
           "folded_params", "affine_params", "linear_fn", "lrp_backward", "modified", "preserved", "run_backward"]


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
        return lambda x, w, b: F.linear(x, w, b)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported "
                             "by LRP rules (only zero padding)")
        conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
        return lambda x, w, b: conv(x, w, b, module.stride, module.padding, module.dilation, module.groups)
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


class _LinearRuleFn(torch.autograd.Function):
    """Identity on the forward value; the backward applies a `LinearRule`."""

    @staticmethod
    def forward(ctx, x, out, rule, fn, weight, bias, record=None):  # noqa: D401
        ctx.save_for_backward(x)
        ctx.rule, ctx.fn, ctx.weight, ctx.bias, ctx.record = rule, fn, weight, bias, record
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        r = lrp_backward(ctx.rule, ctx.fn, x, ctx.weight, ctx.bias, grad, ctx.record)
        return r, None, None, None, None, None, None


def lrp_backward(rule: LinearRule, fn, x: torch.Tensor, weight, bias, grad: torch.Tensor,
                 record: Callable | None = None) -> torch.Tensor:
    """Relevance of a layer's inputs from the relevance ``grad`` of its outputs (see rules.py).

    ``record(r_in, r_out, r_bias)`` receives the per-row sums of the relevance leaving, entering
    and absorbed by the biases of the rule's terms (the rest is absorbed by the stabilizer)."""
    x = x.detach()
    w = weight.detach() if weight is not None else None
    b = bias.detach() if bias is not None else None
    total = torch.zeros_like(x)
    plain = None
    absorbed = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        for group in rule.groups(x):
            xs = [t.input(x).detach().requires_grad_(True) for t in group.terms]
            zs = []
            for t, xk in zip(group.terms, xs):
                wk = t.weight(w) if w is not None else None
                bk = t.bias(b) if (b is not None and t.bias is not None) else None
                zs.append(t.scale * fn(xk, wk, bk))
            z = torch.stack(zs).sum(0) if len(zs) > 1 else zs[0]
            d = rule.stabilize(z.detach())
            s = grad / torch.where(d == 0, torch.ones_like(d), d) * (d != 0)  # 0/0 (ε = 0, all inputs 0) is 0
            if group.sign:
                if plain is None:
                    with torch.no_grad():
                        plain = fn(x, w, b)
                s = s * group.mask(plain)
            grads = torch.autograd.grad(zs, xs, grad_outputs=[s] * len(zs))
            total = total + group.coef * sum(xk.detach() * gk for xk, gk in zip(xs, grads))
            if record is not None and b is not None:
                with torch.no_grad():
                    zero = torch.zeros_like(x)
                    for t in group.terms:
                        if t.bias is not None and w is not None:
                            bias_map = t.scale * fn(zero, t.weight(w), t.bias(b))
                            absorbed += group.coef * (bias_map * s).flatten(1).sum(1)
    if record is not None:
        record(total.flatten(1).sum(1), grad.flatten(1).sum(1), absorbed)
    return total


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
    modules = dict(spec.traced.order)
    bn_of = spec.folds()
    mode = Between(spec.method, spec.relevance, spec.activation, spec.addition)
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
            return _LinearRuleFn.apply(inp[0], value, rule, fn, w, b, record)
        return hook

    def activation_hooks(m, rule):
        stash: list[torch.Tensor] = []

        def pre(mod, inp):  # an in-place activation must not overwrite the input the rule needs
            stash[:] = [inp[0]]
            return (inp[0].clone(),) + tuple(inp[1:]) if getattr(mod, "inplace", False) else None

        def post(mod, inp, out):
            return ActivationFn.apply(stash.pop(), out.detach(), rule)
        return pre, post

    def enter(mod, inp):
        mode.depth += 1

    def leave(mod, inp, out):
        mode.depth -= 1

    try:
        for name, rule in spec.rules.items():
            m = modules[name]
            if isinstance(rule, LinearRule):
                handles.append(m.register_forward_hook(linear_hook(name, rule)))
            else:
                pre, post = activation_hooks(m, rule)
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        for name in bn_of.values():
            handles.append(modules[name].register_forward_hook(lambda m, inp, out: _Bypass.apply(inp[0])))
        for _, m in leaves(model):
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave))
        yield mode
    finally:
        for h in handles:
            h.remove()


def run_backward(model: nn.Module, x: torch.Tensor, selector: torch.Tensor, spec: Backward,
                 scale: bool | None = None) -> torch.Tensor:
    """Input gradient (relevance, with rules) of Σ selector ⊙ f(x), on the modified backward pass.

    ``selector`` is shaped like the output (a one-hot choice of scores, or any output gradient).
    ``scale`` (default: ``spec.relevance``) multiplies it by the output first: the scores themselves
    are the initial relevance."""
    x = x.detach().requires_grad_(True)
    scale = spec.relevance if scale is None else scale
    if spec.plain:
        with torch.enable_grad():
            out = model(x)
    else:
        with modified(model, spec) as mode, torch.enable_grad():
            with mode:
                out = model(x)
    if out.shape != selector.shape:
        raise ValueError(f"output gradient of shape {tuple(selector.shape)} for outputs {tuple(out.shape)}")
    g = selector.to(out) * out.detach() if scale else selector.to(out)
    (grad,) = torch.autograd.grad(out, x, g)
    return grad
