"""The autograd functions that carry relevance through a modified backward pass.

Each keeps the forward value of what it replaces and applies one rule on the way back: a
`rules.LinearRule` for layers with weights (and for anything linear in its input once constants
are fixed: a normalization with its standard deviation held, a product with a constant matrix),
an `ActivationRule` for a ReLU or another elementwise nonlinearity, or a per-operation rule of
`op_rules` for products, bilinear maps and softmax. Nothing here knows about modules or hooks;
`hooks` (modules) and `operations` (code between modules) both build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch

from .rules import IDENTITY, LinearRule

_RECORDER: ContextVar[Callable | None] = ContextVar("relevance_recorder", default=None)
_COUNTS: ContextVar[dict | None] = ContextVar("relevance_counts", default=None)


@contextlib.contextmanager
def recording(record: Callable | None) -> Iterator[None]:
    """While a forward pass runs inside, every per-operation rule it ties reports its relevance
    sums on the way back: ``record(name, r_in, r_out, r_bias)``, named ``<rule>#<k>`` in order."""
    tokens = (_RECORDER.set(record), _COUNTS.set({}))
    try:
        yield
    finally:
        _RECORDER.reset(tokens[0])
        _COUNTS.reset(tokens[1])


def recorder(name: str) -> Callable | None:
    """The current recorder bound to a numbered name (None when nothing records)."""
    record, counts = _RECORDER.get(), _COUNTS.get()
    if record is None or counts is None:
        return None
    k = counts[name] = counts.get(name, 0) + 1
    label = f"{name}#{k}"
    return lambda r_in, r_out, r_bias: record(label, r_in, r_out, r_bias)


def _row_sums(t: torch.Tensor, rows: int) -> torch.Tensor:
    return t.reshape(rows, -1).sum(1) if t.shape and t.shape[0] == rows else t.sum().expand(rows)


def linear_map(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` as a layer's functional form, with its transpose (``linear_map.vjp``)."""
    return torch.nn.functional.linear(x, w, b)


linear_map.vjp = lambda s, w, shape: s @ w  # what an ε-rule pulls back without a second forward


def _plain_terms(rule: LinearRule, x: torch.Tensor, bias) -> bool:
    """Whether ``rule`` is one group of one unmodified term (the ε-rule): its normalizer is the
    layer's own output."""
    groups = rule.groups(x)
    if len(groups) != 1 or len(groups[0].terms) != 1 or groups[0].sign or groups[0].coef != 1.0:
        return False
    t = groups[0].terms[0]
    return t.input is IDENTITY and t.weight is IDENTITY and t.scale == 1.0 and (t.bias is IDENTITY or bias is None)


def lrp_backward(rule: LinearRule, fn, x: torch.Tensor, weight, bias, grad: torch.Tensor,
                 record: Callable | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Relevance of a layer's inputs from the relevance ``grad`` of its outputs (see rules.py).

    ``fn(x, weight, bias)`` is the layer's functional form (``fn.vjp(s, weight, shape)``, where
    given, its transpose); ``out`` its output at ``x``, when known. ``record(r_in, r_out, r_bias)``
    receives the per-row sums of the relevance leaving, entering and absorbed by the biases of the
    rule's terms (the rest is absorbed by the stabilizer)."""
    x = x.detach()
    w = weight.detach() if weight is not None else None
    b = bias.detach() if bias is not None else None
    if out is not None and record is None and getattr(fn, "vjp", None) is not None and _plain_terms(rule, x, b):
        # the ε-rule of a layer whose transpose is known: no second forward
        d = rule.stabilize(out.detach())
        s = grad / torch.where(d == 0, torch.ones_like(d), d) * (d != 0)
        return x * fn.vjp(s, w, x.shape)
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


class LinearRuleFn(torch.autograd.Function):
    """Identity on the forward value; the backward applies a `LinearRule`."""

    @staticmethod
    def forward(ctx, x, out, rule, fn, weight, bias, record=None):  # noqa: D401
        ctx.save_for_backward(x, out)
        ctx.rule, ctx.fn, ctx.weight, ctx.bias, ctx.record = rule, fn, weight, bias, record
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        r = lrp_backward(ctx.rule, ctx.fn, x, ctx.weight, ctx.bias, grad, ctx.record, out)
        return r, None, None, None, None, None, None


def unbroadcast(r: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``r`` over the axes that broadcasting added to a tensor of ``shape``."""
    while r.dim() > len(shape):
        r = r.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and r.shape[i] != 1:
            r = r.sum(i, keepdim=True)
    return r


class SumFn(torch.autograd.Function):
    """a + b on the forward pass; the backward applies a `LinearRule` to the two summands."""

    @staticmethod
    def forward(ctx, a, b, rule):
        # copies, not saved tensors: a plain addition keeps nothing, so code may change a or b in place later
        ctx.a, ctx.b = a.detach().clone(), b.detach().clone()
        ctx.rule = rule
        return a + b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.a, ctx.b
        x = torch.stack(torch.broadcast_tensors(a, b))
        r = lrp_backward(ctx.rule, lambda s, w, bias: s.sum(0), x, None, None, grad)
        return unbroadcast(r[0], a.shape), unbroadcast(r[1], b.shape), None


class PassFn(torch.autograd.Function):
    """The forward value of an operation; the backward signal passes unchanged (relevance conserved)."""

    @staticmethod
    def forward(ctx, x, out):
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class ActivationFn(torch.autograd.Function):
    """The forward value of an activation; the backward applies an `ActivationRule` to the signal."""

    @staticmethod
    def forward(ctx, x, out, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.rule.backward(x, grad), None, None


class OpRuleFn(torch.autograd.Function):
    """The forward value ``out`` of an operation of ``inputs``; the backward applies a per-operation
    rule (`op_rules`): ``rule.relevance(inputs, out, R)`` gives each input's relevance (None: a
    constant that receives none)."""

    @staticmethod
    def forward(ctx, rule, record, out, *inputs):
        ctx.rule, ctx.record = rule, record
        ctx.save_for_backward(out, *inputs)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        out, *inputs = ctx.saved_tensors
        rs = ctx.rule.relevance([t.detach() for t in inputs], out.detach(), grad)
        if ctx.record is not None and grad.dim() > 0:
            rows = grad.shape[0]
            r_in = sum((_row_sums(r, rows) for r in rs if r is not None), torch.zeros(rows, dtype=grad.dtype))
            r_out = _row_sums(grad, rows)
            absorbed = r_out - r_in if getattr(ctx.rule, "absorbs", False) else torch.zeros_like(r_out)
            ctx.record(r_in, r_out, absorbed)
        return (None, None, None, *rs)


def apply_rule(rule, out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """``out`` (computed without a graph) tied to ``inputs`` by a per-operation rule."""
    return OpRuleFn.apply(rule, recorder(rule.name), out.detach(), *inputs)
