"""Operations written between modules (``x + skip``, ``F.relu(x)``, ``q @ k.transpose(-1, -2)``)
under a modified backward pass.

Layers that are modules get their rule from a forward hook (hooks.py); code in a model's
``forward`` does not. While a rule-driven forward runs, `Between` watches every operation outside
the leaf modules that touches a tensor computed from the input (it follows which tensors depend on
the input: parameters, buffers and what is computed from them alone are constants):

- reshapes, selections, transposes and masked fills pass the backward signal unchanged (they
  conserve relevance);
- for relevance methods (LRP), an addition of branches shares the relevance of the sum in
  proportion to each branch's contribution, z_i / (Σ z + ε·sign) (the ε-rule of a sum with unit
  weights; a subtraction likewise, with the subtrahend's contribution negative), an addition of a
  constant treats it as a bias, a product with a constant passes relevance unchanged, and a sum or
  mean over axes shares it in proportion;
- a functional ReLU gets the method's activation rule, as an ``nn.ReLU`` would;
- for LRP, the operations of attention models get the per-operation rules of attention.py: GELU,
  SiLU, sigmoid, tanh (identity), products of two input-dependent tensors (uniform), ``matmul`` /
  ``@`` / ``bmm`` (bilinear; with a constant operand the ε-rule of a linear map), ``F.linear`` with
  constant weights, ``softmax``, ``F.scaled_dot_product_attention``, ``F.layer_norm`` /
  ``group_norm`` / ``rms_norm`` (σ held constant), ``F.glu``;
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
from . import attention as att
from .op_rules import AddConstant, Conserve
from .propagate import ActivationFn, LinearRuleFn, PassFn, SumFn, apply_rule, recorder
from .rules import ActivationRule, LinearRule

ADD_OPS = {"add", "__add__", "__radd__", "__iadd__", "add_"}
SUB_OPS = {"sub", "__sub__", "__isub__", "sub_", "__rsub__", "rsub"}
MUL_OPS = {"mul", "__mul__", "__rmul__", "__imul__", "mul_"}
DIV_OPS = {"div", "__truediv__", "true_divide", "div_", "__itruediv__"}
SCALE_OPS = MUL_OPS | DIV_OPS | {"neg", "__neg__"}
RELU_OPS = {"relu", "relu_"}
PASS_OPS = RESHAPE_OPS | {"pad", "dropout", "contiguous"}
"""Operations that pass the signal unchanged and keep the time axis (the cone engine follows these)."""
MOVE_OPS = {"transpose", "transpose_", "permute", "movedim", "swapaxes", "swapdims", "t", "expand", "expand_as",
            "repeat", "narrow", "select", "masked_fill", "masked_fill_", "split_with_sizes", "tensor_split", "flip",
            "mT", "__get__", "type_as"}
"""Further operations whose ordinary gradient routes relevance without changing it."""
MATMUL_OPS = {"matmul", "__matmul__", "__rmatmul__", "bmm"}
REDUCE_OPS = {"mean", "sum"}


class UnsupportedOperation(ValueError):
    """An operation between modules that the method's modified backward pass has no rule for.

    (Not a TypeError: PyTorch turns a TypeError inside ``Tensor.__add__`` into NotImplemented.)"""


def _result(target: torch.Tensor, value: torch.Tensor, in_place: bool) -> torch.Tensor:
    """An in-place operation changes its argument (code may not use the returned tensor), so the
    rule-driven value is copied into it (autograd follows the copy to the rule); else returned."""
    if not in_place:
        return value
    target.copy_(value)
    return target


def _arg(args, kwargs, i: int, name: str, default=None):
    """Argument ``name`` of a call, given by position ``i`` or by keyword."""
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


class Between(TorchFunctionMode):
    """The mode described in the module docstring; ``depth`` > 0 while a leaf module runs.

    ``ops``: the rules of attention models' operations (LRP; None: such operations raise)."""

    def __init__(self, method: str, relevance: bool, activation: ActivationRule | None, addition: LinearRule | None,
                 ops: att.OpRules | None = None):
        super().__init__()
        self.method, self.relevance, self.activation, self.addition = method, relevance, activation, addition
        self.ops = ops
        self.depth = 0
        self._dep: dict[int, torch.Tensor] = {}  # id -> tensor (kept alive so that ids are not reused)

    def mark(self, *values) -> None:
        """Record tensors (in any nesting) as computed from the input (those a rule holds constant,
        such as CP-LRP's attention weights, are not: they carry no relevance back)."""
        for t in tree_flatten(values)[0]:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                self._dep[id(t)] = t

    def depends(self, t) -> bool:
        """Whether ``t`` was computed from the input (not a parameter, buffer or constant)."""
        return isinstance(t, torch.Tensor) and self._dep.get(id(t)) is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth > 0:
            return func(*args, **kwargs)
        flat = tree_flatten((args, kwargs))[0]
        deps = [t for t in flat if self.depends(t)]
        if not deps:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        out = self._dispatch(func, name, args, kwargs, deps)
        if out is NotImplemented:
            out = func(*args, **kwargs)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:  # sizes, shapes, comparisons, zeros_like
                return out
            raise self._unsupported(name)
        self.mark(out)
        return out

    def _dispatch(self, func, name, args, kwargs, deps):
        """The rule-driven result of one operation on input-dependent tensors, or NotImplemented."""
        if name in PASS_OPS or (self.relevance and name in MOVE_OPS):
            return func(*args, **kwargs)
        in_place = (name.endswith("_") and not name.endswith("__")) or name.startswith("__i")  # the first argument changes
        first = args[0] if args else None
        if name in RELU_OPS and self.activation is not None:
            xin = first.clone() if in_place else first  # the rule reads the values before the change
            return _result(first, ActivationFn.apply(xin, torch.relu(xin.detach()), self.activation), in_place)
        if not self.relevance:
            if name in ADD_OPS | SCALE_OPS:
                return func(*args, **kwargs)  # guided backprop / deconvnet: the ordinary gradient of a linear operation
            return NotImplemented
        if in_place:
            a0 = first.clone()
            self.mark(a0)
            base = "__" + name[3:] if name.startswith("__i") else name[:-1]
            plain = getattr(torch.Tensor, base, None)
            if plain is None:
                return NotImplemented
            value = self._dispatch(plain, base, (a0, *args[1:]), kwargs, [a0 if t is first else t for t in deps])
            return NotImplemented if value is NotImplemented else _result(first, value, True)
        both = len(args) >= 2 and all(self.depends(a) for a in args[:2])
        if name in ADD_OPS | SUB_OPS:
            return self._sum(func, name, args, kwargs)
        if name in MUL_OPS and both and self.ops is not None:
            return att.product(args[0], args[1])
        if name in SCALE_OPS and len(deps) == 1 and (name not in DIV_OPS or self.depends(first)):
            with torch.no_grad():
                out = func(*[a.detach() if a is deps[0] else a for a in args], **kwargs)
            return apply_rule(Conserve(), out, deps[0])
        if name in REDUCE_OPS and len(deps) == 1 and self.depends(first):
            with torch.no_grad():
                out = func(*args, **kwargs)
            rest = args[1:]
            return LinearRuleFn.apply(first, out, self.addition, lambda v, w, b: func(v, *rest, **kwargs), None, None,
                                      recorder(name))
        if self.ops is None:
            return NotImplemented
        return self._attention_op(func, name, args, kwargs, deps)

    def _sum(self, func, name, args, kwargs):
        """``a + b`` or ``a − b`` (``rsub``: ``b − a``): two input-dependent terms share the relevance
        of the sum (ε-rule, a subtrahend contributing its negative); a constant term is a bias."""
        if len(args) < 2:
            return NotImplemented
        minus = name in SUB_OPS
        a, b = (args[1], args[0]) if name in ("__rsub__", "rsub") else (args[0], args[1])
        alpha = kwargs.get("alpha", 1)
        if self.depends(a) and self.depends(b):
            if alpha != 1:
                return NotImplemented
            return SumFn.apply(a, PassFn.apply(b, -b.detach()) if minus else b, self.addition)
        x = a if self.depends(a) else b
        if self.ops is None or (x is b and alpha != 1):
            return NotImplemented
        with torch.no_grad():
            out = func(*args, **kwargs)
        term = PassFn.apply(x, -x.detach()) if minus and x is b else x
        return apply_rule(AddConstant(self.ops.epsilon), out, term)

    def _attention_op(self, func, name, args, kwargs, deps):
        ops, x = self.ops, args[0] if args else None
        if name in att.NONLINEAR_OPS and self.depends(x):
            with torch.no_grad():
                value = func(*args, **kwargs)
            return att.nonlinear(x, value)
        if name in MATMUL_OPS and len(args) == 2:
            return att.matmul(args[0], args[1], self.depends(args[0]), self.depends(args[1]), ops)
        if name == "linear" and self.depends(x) and len(deps) == 1:
            return att.linear(x, _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias"), ops.dense)
        if name == "softmax" and self.depends(x) and len(deps) == 1:
            return att.softmax(x, _arg(args, kwargs, 1, "dim"), ops, _arg(args, kwargs, 2, "dtype"))
        if name == "glu" and self.depends(x):
            return att.glu(x, _arg(args, kwargs, 1, "dim", -1))
        if name == "layer_norm" and self.depends(x) and len(deps) == 1:
            return att.layer_norm(x, _arg(args, kwargs, 1, "normalized_shape"), _arg(args, kwargs, 2, "weight"),
                                  _arg(args, kwargs, 3, "bias"), _arg(args, kwargs, 4, "eps", 1e-5), ops.norm)
        if name == "group_norm" and self.depends(x) and len(deps) == 1:
            return att.group_norm(x, _arg(args, kwargs, 1, "num_groups"), _arg(args, kwargs, 2, "weight"),
                                  _arg(args, kwargs, 3, "bias"), _arg(args, kwargs, 4, "eps", 1e-5), ops.norm)
        if name == "rms_norm" and self.depends(x) and len(deps) == 1:
            return att.rms_norm(x, _arg(args, kwargs, 1, "normalized_shape"), _arg(args, kwargs, 2, "weight"),
                                _arg(args, kwargs, 3, "eps"), ops.norm)
        if name == "scaled_dot_product_attention":
            q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
            if _arg(args, kwargs, 4, "dropout_p", 0.0) or kwargs.get("enable_gqa", False):
                raise self._unsupported(name + " with dropout_p > 0 or enable_gqa")
            return att.attention(q, k, v, ops, _arg(args, kwargs, 3, "attn_mask"), _arg(args, kwargs, 5, "is_causal",
                                 False), _arg(args, kwargs, 6, "scale"), tuple(self.depends(t) for t in (q, k, v)))
        return NotImplemented

    def _unsupported(self, name: str) -> UnsupportedOperation:
        extra = (" products and matmuls of input-dependent tensors, softmax, scaled_dot_product_attention, layer_norm, "
                 "group_norm, rms_norm, glu, GELU/SiLU/sigmoid/tanh, linear with constant weights,") if self.ops else ""
        return UnsupportedOperation(
            f"operation {name!r} between modules is not supported by {self.method}: the modified backward pass would "
            f"differentiate it plainly. Supported between modules: additions and subtractions, products with "
            f"constants, sums and means,{extra} reshapes and selections, functional ReLU. Methods that handle any "
            "differentiable operation: gradient, gradient_x_input, integrated_gradients, smoothgrad, grad_cam")
