"""The mechanism behind modified backward passes: forward hooks that swap in rule-driven backward
functions, BatchNorm folding (canonization) done functionally, and a guard that leaves the
user's model exactly as it was (hooks removed, modes restored), also when an exception is raised.

Nothing here mutates a parameter or buffer: a folded Conv+BatchNorm is evaluated with folded
weights computed on the fly, and the BatchNorm is bypassed by a hook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .rules import ActivationRule, LinearRule

LINEAR_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
PASS_TYPES = (nn.Dropout, nn.Flatten, nn.ConstantPad1d, nn.ConstantPad2d, nn.ZeroPad2d, nn.Identity,
              nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
"""Layers whose ordinary gradient is also their LRP backward (reshapes, zero pads, max-pooling
winner-takes-all, dropout in eval mode)."""


@dataclass
class Traced:
    """Leaf modules in execution order and the Linear/Conv layer each BatchNorm directly follows."""

    order: list[tuple[str, nn.Module]]
    folded: dict[str, str]  # batchnorm name -> linear layer name
    chain: bool = False  # every leaf consumed the previous leaf's output, the last one gave the output


def leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, m in model.named_modules():
        if not any(True for _ in m.children()):
            yield name, m


def trace(model: nn.Module, x: torch.Tensor) -> Traced:
    """Run the model once (no grad) recording which leaf modules run, in order, and BN pairs."""
    order: list[tuple[str, nn.Module]] = []
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # keeps outputs alive: ids are not reused
    folded: dict[str, str] = {}
    handles = []
    last: list = [None, True]  # previous leaf output, chain so far

    def hook(name):
        def fn(m, inp, out):
            if order and (not inp or inp[0] is not last[0]):
                last[1] = False
            last[0] = out
            order.append((name, m))
            if isinstance(m, BN_TYPES):
                src = produced.get(id(inp[0]))
                if src is not None:
                    folded[name] = src[0]
            if isinstance(m, LINEAR_TYPES):
                produced[id(out)] = (name, out)
        return fn

    try:
        for name, m in leaves(model):
            handles.append(m.register_forward_hook(hook(name)))
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    return Traced(order, folded, bool(order) and last[1] and final is last[0])


def folded_params(linear: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of ``linear`` with a following eval-mode BatchNorm merged into it."""
    w = linear.weight
    b = linear.bias
    if bn is None:
        return w, b
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    w2 = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b0 = b if b is not None else torch.zeros_like(bn.running_mean)
    return w2, (b0 - bn.running_mean) * scale + shift


def linear_fn(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:
    """Functional form f(x, weight, bias) of a Linear/Conv layer (or a parameter-free pool)."""
    if isinstance(module, nn.Linear):
        return lambda x, w, b: F.linear(x, w, b)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported "
                             "by LRP rules (only zero padding)")
        conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
        return lambda x, w, b: conv(x, w, b, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, POOL_TYPES):
        return lambda x, w, b: module.forward(x)  # forward(), not __call__: no hooks (ours among them)
    raise TypeError(type(module).__name__)


class _LinearRuleFn(torch.autograd.Function):
    """Identity on the forward value; the backward applies a `LinearRule`."""

    @staticmethod
    def forward(ctx, x, out, rule, fn, weight, bias):  # noqa: D401
        ctx.save_for_backward(x)
        ctx.rule, ctx.fn, ctx.weight, ctx.bias = rule, fn, weight, bias
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return lrp_backward(ctx.rule, ctx.fn, x, ctx.weight, ctx.bias, grad), None, None, None, None, None


def lrp_backward(rule: LinearRule, fn, x: torch.Tensor, weight, bias, grad: torch.Tensor) -> torch.Tensor:
    """Relevance of a layer's inputs from the relevance ``grad`` of its outputs (see rules.py)."""
    x = x.detach()
    w = weight.detach() if weight is not None else None
    b = bias.detach() if bias is not None else None
    total = torch.zeros_like(x)
    with torch.enable_grad():
        for group in rule.groups(x):
            xs = [t.input(x).detach().requires_grad_(True) for t in group.terms]
            zs = []
            for t, xk in zip(group.terms, xs):
                wk = t.weight(w) if w is not None else None
                bk = t.bias(b) if (b is not None and t.bias is not None) else None
                zs.append(t.scale * fn(xk, wk, bk))
            z = torch.stack(zs).sum(0) if len(zs) > 1 else zs[0]
            s = grad / rule.stabilize(z.detach())
            grads = torch.autograd.grad(zs, xs, grad_outputs=[s] * len(zs))
            total = total + group.coef * sum(xk.detach() * gk for xk, gk in zip(xs, grads))
    return total


class _ActivationFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.rule.backward(x, grad), None, None


class _Bypass(torch.autograd.Function):
    """A folded BatchNorm: its output is the (already normalized) input, gradient passes."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

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
def modified(model: nn.Module, traced: Traced, rules: dict[str, LinearRule | ActivationRule],
             canonize: bool = True) -> Iterator[None]:
    """Forward hooks that make the backward pass follow ``rules`` (module name → rule).

    With ``canonize``, each BatchNorm that directly follows a ruled Linear/Conv layer is folded
    into it. Hooks are always removed on exit.
    """
    modules = dict(traced.order)
    bn_of = {lin: bn for bn, lin in traced.folded.items() if canonize and lin in rules}
    handles = []

    def linear_hook(name, rule):
        bn = modules[bn_of[name]] if name in bn_of else None
        fn = linear_fn(modules[name])

        def hook(m, inp, out):
            if isinstance(m, POOL_TYPES):
                w = b = None
                value = out.detach()
            else:
                w, b = folded_params(m, bn)
                with torch.no_grad():
                    value = fn(inp[0], w, b) if bn is not None else out.detach()
            return _LinearRuleFn.apply(inp[0], value, rule, fn, w, b)
        return hook

    def activation_hook(rule):
        return lambda m, inp, out: _ActivationFn.apply(inp[0], out.detach(), rule)

    try:
        for name, rule in rules.items():
            m = modules[name]
            if isinstance(rule, LinearRule):
                handles.append(m.register_forward_hook(linear_hook(name, rule)))
            else:
                handles.append(m.register_forward_hook(activation_hook(rule)))
        for name in bn_of.values():
            handles.append(modules[name].register_forward_hook(lambda m, inp, out: _Bypass.apply(inp[0])))
        yield
    finally:
        for h in handles:
            h.remove()
