"""Rule-driven forms of the operations and modules of attention models (AttnLRP, CP-LRP).

Each function computes the same value as its PyTorch counterpart and ties it to its inputs by the
rules of op_rules.py and rules.py, so that a relevance backward pass follows them. They are shared
by the module hooks (hooks.py: ``nn.MultiheadAttention``, ``nn.LayerNorm`` …) and by the
interception of code between modules (operations.py: ``q @ k.transpose(-1, -2)``,
``F.scaled_dot_product_attention``, ``F.gelu`` …): one definition of each operation's rule.

`OpRules` holds what a composite decides for them: the attention ``variant``, the ε of the
per-operation rules, the rule of normalizations (σ held constant) and of linear maps with constant
weights written as code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .op_rules import VARIANTS, AddConstant, Bilinear, Softmax, Uniform
from .propagate import ActivationFn, LinearRuleFn, apply_rule, linear_map, recorder
from .rules import Epsilon, LinearRule, Pass

Tensor = torch.Tensor
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
NONLINEAR_TYPES = (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)
"""Elementwise nonlinearities of one input that pass relevance unchanged (the identity rule)."""
NONLINEAR_OPS = {"gelu", "silu", "sigmoid", "tanh", "silu_", "sigmoid_", "tanh_", "log", "clamp", "clamp_min"}
"""The same between modules (``log`` and ``clamp`` of a spectrogram front end among them)."""


@dataclass(frozen=True)
class OpRules:
    """A composite's choices for the operations of attention models."""

    variant: str = "attnlrp"
    epsilon: float = 1e-6
    norm: LinearRule = field(default_factory=lambda: Epsilon(1e-6))
    dense: LinearRule = field(default_factory=lambda: Epsilon(1e-6))

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"attention must be one of {VARIANTS}, not {self.variant!r}")


def nonlinear(x: Tensor, value: Tensor) -> Tensor:
    """An elementwise nonlinearity of ``x`` with forward value ``value``: the identity rule."""
    return ActivationFn.apply(x, value.detach(), Pass)


def product(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` of two input-dependent tensors: half of the relevance to each (uniform rule)."""
    with torch.no_grad():
        out = a * b
    return apply_rule(Uniform(), out, a, b)


def matmul(a: Tensor, b: Tensor, dep_a: bool, dep_b: bool, rules: OpRules, scale: float = 1.0) -> Tensor:
    """``scale · a @ b``: both input-dependent: half each; one constant: the ε-rule of a linear map."""
    with torch.no_grad():
        out = torch.matmul(a, b) * scale if scale != 1.0 else torch.matmul(a, b)
    share = (0.5, 0.5) if dep_a and dep_b else (float(dep_a), float(dep_b))
    return apply_rule(Bilinear(share[0], share[1], scale, rules.epsilon), out, a, b)


def softmax(x: Tensor, dim: int, rules: OpRules, dtype=None) -> Tensor:
    """AttnLRP: the softmax rule; CP-LRP: the weights held constant (no relevance to ``x``)."""
    with torch.no_grad():
        out = torch.softmax(x, dim, dtype=dtype)
    if rules.variant == "cp":
        return out
    return apply_rule(Softmax(dim), out, x)


def add_constant(x: Tensor, c: Tensor | float, rules: OpRules) -> Tensor:
    """``x + c`` with ``c`` constant (an attention mask): ``c`` is a bias."""
    with torch.no_grad():
        out = x + c
    return apply_rule(AddConstant(rules.epsilon), out, x)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, rule: LinearRule) -> Tensor:
    """``F.linear`` with constant weights under a layer rule."""
    with torch.no_grad():
        out = F.linear(x, weight, bias)
    return LinearRuleFn.apply(x, out, rule, linear_map, weight, bias, recorder("linear"))


def _affine(y: Tensor, w: Tensor | None, b: Tensor | None, shape) -> Tensor:
    if w is not None:
        y = y * w.reshape(shape)
    return y + b.reshape(shape) if b is not None else y


def layer_norm(x: Tensor, normalized_shape, weight, bias, eps: float, rule: LinearRule, record=None) -> Tensor:
    """LayerNorm with its standard deviation held constant: a linear map (centring, scaling) + bias."""
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    with torch.no_grad():
        sigma = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
        out = F.layer_norm(x, tuple(normalized_shape), weight, bias, eps)
    shape = tuple(normalized_shape)

    def fn(v, w, b):
        return _affine((v - v.mean(dims, keepdim=True)) / sigma, w, b, shape)

    def vjp(g, w, _shape):  # the centring is symmetric: its transpose is itself
        gw = g * w if w is not None else g
        return (gw - gw.mean(dims, keepdim=True)) / sigma
    fn.vjp = vjp
    return LinearRuleFn.apply(x, out, rule, fn, weight, bias, record or recorder("layer_norm"))


def rms_norm(x: Tensor, normalized_shape, weight, eps: float | None, rule: LinearRule, record=None) -> Tensor:
    """RMSNorm with its root mean square held constant: a diagonal linear map."""
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    with torch.no_grad():
        rms = torch.sqrt((x * x).mean(dims, keepdim=True) + eps)
        out = F.rms_norm(x, tuple(normalized_shape), weight, eps)
    shape = tuple(normalized_shape)
    def fn(v, w, b):
        return _affine(v / rms, w, None, shape)
    fn.vjp = lambda g, w, _shape: (g * w if w is not None else g) / rms
    return LinearRuleFn.apply(x, out, rule, fn, weight, None, record or recorder("rms_norm"))


def group_norm(x: Tensor, groups: int, weight, bias, eps: float, rule: LinearRule, record=None) -> Tensor:
    """GroupNorm (N, C, *) with each group's standard deviation held constant."""
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.dim() - 2)
    with torch.no_grad():
        g = x.reshape(n, groups, -1)
        sigma = torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + eps)
        out = F.group_norm(x, groups, weight, bias, eps)

    def fn(v, w, b):
        vg = v.reshape(n, groups, -1)
        return _affine(((vg - vg.mean(-1, keepdim=True)) / sigma).reshape(v.shape), w, b, shape)

    def vjp(g, w, _shape):
        gw = (g * w.reshape(shape) if w is not None else g).reshape(n, groups, -1)
        return ((gw - gw.mean(-1, keepdim=True)) / sigma).reshape(g.shape)
    fn.vjp = vjp
    return LinearRuleFn.apply(x, out, rule, fn, weight, bias, record or recorder("group_norm"))


def glu(x: Tensor, dim: int) -> Tensor:
    """GLU a ⊙ σ(b): the sigmoid passes relevance (identity), the product shares it (uniform)."""
    a, b = x.chunk(2, dim)
    with torch.no_grad():
        sb_value = torch.sigmoid(b)
    return product(a, nonlinear(b, sb_value))


def _mask(attn_mask: Tensor | None, causal: bool, n_q: int, n_k: int, like: Tensor) -> Tensor | None:
    """A float mask to add to the scores (0 where attending, −inf where not), or None."""
    mask = None
    if causal:
        mask = torch.zeros(n_q, n_k, dtype=like.dtype, device=like.device).masked_fill(
            ~torch.ones(n_q, n_k, dtype=torch.bool, device=like.device).tril(), float("-inf"))
    if attn_mask is not None:
        m = attn_mask
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=like.dtype, device=like.device).masked_fill(~m, float("-inf"))
        mask = m.to(like.dtype) if mask is None else mask + m.to(like.dtype)
    return mask


def attention(q: Tensor, k: Tensor, v: Tensor, rules: OpRules, attn_mask: Tensor | None = None,
              is_causal: bool = False, scale: float | None = None, deps: tuple[bool, bool, bool] = (True, True, True)
              ) -> Tensor:
    """``softmax(q kᵀ·scale + mask) v`` as `F.scaled_dot_product_attention` (boolean masks: True
    attends) with the variant's rules: scores bilinear, softmax rule (or held), values bilinear."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    kt = k.transpose(-1, -2)
    dep_scores = deps[0] or deps[1]
    scores = matmul(q, kt, deps[0], deps[1], rules, scale) if dep_scores else (q @ kt) * scale
    mask = _mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], scores)
    if mask is not None:
        scores = add_constant(scores, mask, rules) if dep_scores else scores + mask
    weights = softmax(scores, -1, rules) if dep_scores else torch.softmax(scores, -1)
    dep_weights = dep_scores and rules.variant != "cp"
    if not (dep_weights or deps[2]):
        return weights @ v
    return matmul(weights, v, dep_weights, deps[2], rules)


def multihead_attention(m: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor, rules: OpRules,
                        dep: Callable[[Tensor], bool], key_padding_mask: Tensor | None = None,
                        attn_mask: Tensor | None = None) -> Tensor:
    """The attention output of ``nn.MultiheadAttention.forward`` (eval mode) with the rules:
    projections under the dense rule, attention as `attention`, the output projection under the
    dense rule. (The attention weights it may also return carry no relevance.)"""
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not supported by LRP's "
                         "attention rules")
    deps = tuple(dep(t) for t in (query, key, value))
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    if not m.batch_first:  # every step below runs batch first: relevance sums per row of the batch
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    bsz, n_q, e = query.shape
    n_k = key.shape[1]
    h, hd = m.num_heads, m.head_dim
    if m._qkv_same_embed_dim:
        wq, wk, wv = m.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)

    def project(t, w, b, d):
        return linear(t, w, b, rules.dense) if d else F.linear(t, w, b)
    q, k, v = project(query, wq, bq, deps[0]), project(key, wk, bk, deps[1]), project(value, wv, bv, deps[2])
    q, k, v = (t.reshape(bsz, t.shape[1], h, hd).transpose(1, 2) for t in (q, k, v))
    mask = None
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dtype != torch.bool else torch.zeros(
            attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(attn_mask, float("-inf"))
        mask = mask.reshape(bsz, h, n_q, n_k) if mask.dim() == 3 else mask
    if key_padding_mask is not None:
        kp = key_padding_mask if key_padding_mask.dtype != torch.bool else torch.zeros(
            key_padding_mask.shape, dtype=q.dtype, device=q.device).masked_fill(key_padding_mask, float("-inf"))
        kp = kp.reshape(bsz, 1, 1, n_k)
        mask = kp if mask is None else mask + kp
    out = attention(q, k, v, rules, mask, False, None, deps)  # is_causal is a hint beside attn_mask: the mask rules
    out = out.transpose(1, 2).reshape(bsz, n_q, e)
    out = linear(out, m.out_proj.weight, m.out_proj.bias, rules.dense) if any(deps) else \
        F.linear(out, m.out_proj.weight, m.out_proj.bias)
    if not m.batch_first:
        out = out.transpose(0, 1)
    if not batched:
        out = out.squeeze(1)
    return out


@dataclass(frozen=True)
class ModuleRule:
    """A module whose whole forward is replaced by its rule-driven form (``kind``: glu, softmax,
    mha). ``unit``: a module with children that the rules treat as one operation."""

    kind: str
    unit: bool = False


OPEN = ModuleRule("open")
"""A parameter-free module whose operations are followed as code between modules."""


def norm_module(m: nn.Module, x: Tensor, rule: LinearRule, record=None) -> Tensor:
    """``nn.LayerNorm`` / ``nn.GroupNorm`` / ``nn.RMSNorm`` with σ held constant."""
    if isinstance(m, nn.LayerNorm):
        return layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps, rule, record)
    if isinstance(m, nn.GroupNorm):
        return group_norm(x, m.num_groups, m.weight, m.bias, m.eps, rule, record)
    return rms_norm(x, m.normalized_shape, m.weight, m.eps, rule, record)


def _call_arg(args, kwargs, i, name, default=None):
    return kwargs[name] if name in kwargs else (args[i] if len(args) > i else default)


def module_forward(rule: ModuleRule, m: nn.Module, args: tuple, kwargs: dict, out, rules: OpRules,
                   dep: Callable[[Tensor], bool]):
    """The rule-driven output of module ``m`` called with ``args``/``kwargs`` (value: ``out``)."""
    if rule.kind == "glu":
        return glu(args[0], m.dim)
    if rule.kind == "softmax":
        return softmax(args[0], m.dim, rules)
    if rule.kind == "mha":
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
        a = {n: _call_arg(args, kwargs, i, n) for i, n in enumerate(names)}
        value = multihead_attention(m, a["query"], a["key"], a["value"], rules, dep, a["key_padding_mask"],
                                    a["attn_mask"])
        return (value, out[1])
    raise ValueError(f"unknown module rule {rule.kind!r}")
