"""Operations written between modules (``x + skip``, ``F.relu(x)``, ``x.view(...)``) under a
modified backward pass.

Layers that are modules get their rule from a forward hook (hooks.py); code in a model's
``forward`` does not. While a rule-driven forward runs, `Between` watches every operation outside
the leaf modules that touches a tensor of the graph:

- reshapes and selections pass the backward signal unchanged (they conserve relevance);
- for relevance methods (LRP), an addition of branches shares the relevance of the sum in
  proportion to each branch's contribution, z_i / (Σ z + ε·sign) (the ε-rule of a sum with unit
  weights), and a product with a constant passes relevance unchanged;
- a functional ReLU gets the method's activation rule, as an ``nn.ReLU`` would;
- anything else raises an error that names the operation: it would otherwise be differentiated
  plainly and the map would be wrong without a word.

For gradient-like methods with modified ReLUs (guided backprop, deconvnet) additions and constant
products keep their ordinary gradient.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..graph import RESHAPE_OPS
from .rules import ActivationRule, LinearRule

ADD_OPS = {"add", "__add__", "__radd__", "__iadd__", "add_"}
SCALE_OPS = {"mul", "__mul__", "__rmul__", "__imul__", "mul_", "div", "__truediv__", "true_divide", "neg", "__neg__"}
RELU_OPS = {"relu", "relu_"}
PASS_OPS = RESHAPE_OPS | {"pad", "dropout", "contiguous"}


class UnsupportedOperation(ValueError):
    """An operation between modules that the method's modified backward pass has no rule for.

    (Not a TypeError: PyTorch turns a TypeError inside ``Tensor.__add__`` into NotImplemented.)"""


class _Sum(torch.autograd.Function):
    """a + b on the forward pass; the backward applies a `LinearRule` to the two summands."""

    @staticmethod
    def forward(ctx, a, b, rule):
        # copies, not saved tensors: a plain addition keeps nothing, so code may change a or b in place later
        ctx.a, ctx.b = a.detach().clone(), b.detach().clone()
        ctx.rule = rule
        return a + b

    @staticmethod
    def backward(ctx, grad):
        from .hooks import lrp_backward

        a, b = ctx.a, ctx.b
        x = torch.stack(torch.broadcast_tensors(a, b))
        r = lrp_backward(ctx.rule, lambda s, w, bias: s.sum(0), x, None, None, grad)
        ra, rb = r[0], r[1]
        return _unbroadcast(ra, a.shape), _unbroadcast(rb, b.shape), None


class _Pass(torch.autograd.Function):
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


def _unbroadcast(r: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    while r.dim() > len(shape):
        r = r.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and r.shape[i] != 1:
            r = r.sum(i, keepdim=True)
    return r


def _result(target: torch.Tensor, value: torch.Tensor, in_place: bool) -> torch.Tensor:
    """An in-place operation changes its argument (code may not use the returned tensor), so the
    rule-driven value is copied into it (autograd follows the copy to the rule); else returned."""
    if not in_place:
        return value
    target.copy_(value)
    return target


class Between(TorchFunctionMode):
    """The mode described in the module docstring; ``depth`` > 0 while a leaf module runs."""

    def __init__(self, method: str, relevance: bool, activation: ActivationRule | None, addition: LinearRule | None):
        super().__init__()
        self.method, self.relevance, self.activation, self.addition = method, relevance, activation, addition
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth > 0:
            return func(*args, **kwargs)
        flat = tree_flatten((args, kwargs))[0]
        tensors = [t for t in flat if isinstance(t, torch.Tensor) and t.requires_grad]
        name = getattr(func, "__name__", str(func))
        if not tensors or name in PASS_OPS:
            return func(*args, **kwargs)
        in_place = name.endswith("_") or name.startswith("__i")  # the first argument changes
        if name in RELU_OPS and self.activation is not None:
            x = tensors[0]
            xin = x.clone() if in_place else x  # the rule reads the values before the change
            return _result(x, ActivationFn.apply(xin, torch.relu(xin.detach()), self.activation), in_place)
        if not self.relevance and name in ADD_OPS | SCALE_OPS:
            return func(*args, **kwargs)  # guided backprop / deconvnet: the ordinary gradient of a linear operation
        if name in ADD_OPS and len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.requires_grad
                                                      for a in args[:2]) and "alpha" not in kwargs:
            a = args[0].clone() if in_place else args[0]
            return _result(args[0], _Sum.apply(a, args[1], self.addition), in_place)
        constants = [a for a in flat if isinstance(a, torch.Tensor) and not a.requires_grad and a.numel() > 1]
        if name in SCALE_OPS and len(tensors) == 1 and not constants:
            detached = [a.detach().clone() if a is tensors[0] else a for a in args]
            with torch.no_grad():
                out = func(*detached, **kwargs)
            return _result(tensors[0], _Pass.apply(tensors[0], out), in_place and args[0] is tensors[0])
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:  # sizes, shapes, comparisons
            return out
        raise UnsupportedOperation(f"operation {name!r} between modules is not supported by {self.method}: the modified "
                        "backward pass would differentiate it plainly. Supported between modules: additions of "
                        "branches, products with constants, reshapes and selections, functional ReLU. Methods that "
                        "handle any differentiable operation: gradient, gradient_x_input, integrated_gradients, "
                        "smoothgrad, grad_cam")
