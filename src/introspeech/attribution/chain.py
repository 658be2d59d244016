"""Fast path of `attribute_frames` for chains of 1-D layers: a backward pass restricted to each
frame's cone.

For a model whose leaves run one after another (Conv1d — grouped, dilated, strided, numeric or
``"same"`` padding — BatchNorm1d, ReLU, ConstantPad1d, Dropout, Identity: the Wav2Letter family),
each point of a method's `Plan` is run forward once; then the backward signal of many frames is
propagated together, each frame carrying only the window of positions that can reach it (1
position at the output, the receptive field at the input). Every step is the linear map the
rule-driven autograd backward applies for the same `Backward` (the same rules, the same folding,
transposed convolutions with the rule's modified weights, normalizers cut from one full-length
forward of each rule term), so the result equals the per-frame computation; only the work outside
the cones is skipped. A layer or rule this engine cannot follow raises `NotChain`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .graph import _window_padding, trace
from .hooks import Backward, affine_params, folded_params
from .methods import Plan
from .rules import ActivationRule, DeconvReLU, Gradient, GuidedReLU, LinearRule, Pass

SUPPORTED = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.ConstantPad1d, nn.Dropout, nn.Identity)


class NotChain(ValueError):
    """The model or the method's backward pass is outside what the chain engine follows."""


@dataclass
class Step:
    """One leaf layer of the chain and what its backward needs from the forward pass."""

    kind: str  # conv | scale | relu | pad | skip
    x: torch.Tensor  # the layer's input (1, C, T), from the forward pass
    rule: LinearRule | ActivationRule | None = None
    weight: torch.Tensor | None = None  # (folded) convolution weight, or a BatchNorm's scale
    bias: torch.Tensor | None = None
    conv: tuple[int, int, int, int, int] = (1, 0, 1, 1, 1)  # stride, left padding, dilation, kernel, groups
    norms: list | None = None  # per group: (stabilized normalizer Z_g, output mask or None), full length


def check_chain(model: nn.Module, x: torch.Tensor) -> None:
    """Raise `NotChain` unless the model is a chain of supported 1-D layers on a 3-D input."""
    if x.dim() != 3:
        raise NotChain("the chain engine needs (batch, channels, time) inputs")
    traced = trace(model, x)
    if not traced.chain:
        raise NotChain("the model's layers do not run as a chain (operations between modules: "
                       f"{sorted(set(traced.operations))[:6]})")
    bad = [f"{n} ({type(m).__name__})" for n, m in traced.order if not isinstance(m, SUPPORTED)]
    if bad:
        raise NotChain(f"the chain engine follows Conv1d/BatchNorm1d/ReLU/ConstantPad1d/Dropout/Identity only, not {bad[:3]}")
    for n, m in traced.order:
        if isinstance(m, nn.Conv1d) and m.padding_mode != "zeros":
            raise NotChain(f"layer {n!r}: padding_mode={m.padding_mode!r}")
        if isinstance(m, nn.ConstantPad1d) and m.value != 0:
            raise NotChain(f"layer {n!r}: padding value {m.value}")


def _norms(rule: LinearRule, h, w, b, conv) -> list:
    out = []
    for group in rule.groups(h):
        z = sum(t.scale * conv(t.input(h), t.weight(w), t.bias(b) if (b is not None and t.bias) else None)
                for t in group.terms)
        mask = group.mask(conv(h, w, b)) if group.sign else None
        out.append((rule.stabilize(z), mask))
    return out


def build(model: nn.Module, x: torch.Tensor, spec: Backward) -> tuple[list[Step], torch.Tensor]:
    """Forward once, recording each step's input and (for rules) the normalizers; returns the steps
    and the output as the rule-driven forward computes it (folded layers included)."""
    traced = spec.traced or trace(model, x)
    modules = dict(traced.order)
    # the gradient through an eval-mode BatchNorm is its scale: fold it into the weights, as rules do
    folds = spec.folds() if spec.relevance else {lin: bn for bn, lin in traced.folded.items()}
    folded_bns = set(folds.values())
    steps: list[Step] = []
    h = x
    with torch.no_grad():
        for name, m in traced.order:
            rule = spec.rules.get(name)
            if isinstance(m, nn.Conv1d):
                if rule is not None and not isinstance(rule, LinearRule):
                    raise NotChain(f"layer {name!r} has the non-linear-layer rule {rule!r}")
                w, b = folded_params(m, modules[folds[name]] if name in folds else None)
                w, b = w.detach(), None if b is None else b.detach()
                geo = (m.stride[0], _window_padding(m), m.dilation[0], m.kernel_size[0], m.groups)

                def conv(t, wk, bk, m=m):
                    return F.conv1d(t, wk, bk, m.stride, m.padding, m.dilation, m.groups)
                step = Step("conv", h, rule, w, b, geo)
                if rule is not None:
                    step.norms = _norms(rule, h, w, b, conv)
                steps.append(step)
                h = conv(h, w, b)
            elif isinstance(m, nn.BatchNorm1d):
                if name in folded_bns:
                    steps.append(Step("skip", h))
                    continue
                scale, shift = (t.detach() for t in affine_params(m))
                if isinstance(rule, LinearRule):  # its own rule: a depthwise 1×1 convolution
                    c = scale.shape[0]
                    w = scale.reshape(c, 1, 1)

                    def conv(t, wk, bk, c=c):
                        return F.conv1d(t, wk, bk, groups=c)
                    step = Step("conv", h, rule, w, shift, (1, 0, 1, 1, c))
                    step.norms = _norms(rule, h, w, shift, conv)
                    steps.append(step)
                else:
                    steps.append(Step("scale", h, weight=scale))
                h = h * scale[None, :, None] + shift[None, :, None]
            elif isinstance(m, nn.ReLU):
                act = rule if isinstance(rule, ActivationRule) else Gradient
                step = Step("relu", h, act)
                if act in (Gradient, GuidedReLU):
                    step.norms = [(h > 0).to(h.dtype)]  # the forward mask, cut per frame later
                elif act not in (Pass, DeconvReLU):
                    raise NotChain(f"activation rule {act.name!r}")
                steps.append(step)
                h = torch.relu(h)
            elif isinstance(m, nn.ConstantPad1d):
                steps.append(Step("pad", h, conv=(1, m.padding[0], 1, 1, 1)))
                h = m(h)
            else:  # Dropout (eval) and Identity
                steps.append(Step("skip", h))
                h = m(h)
    return steps, h


def gather(full: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    """Windows ``(n, C, width)`` of a ``(1, C, T)`` tensor at per-frame starts; zero outside [0, T)."""
    t = full.shape[-1]
    lo, hi = int(starts.min()), int(starts.max()) + width
    left, right = max(0, -lo), max(0, hi - t)
    padded = F.pad(full[0], (left, right)) if left or right else full[0]
    windows = padded.unfold(-1, width, 1)  # (C, positions, width), a view
    return windows[:, starts + left].permute(1, 0, 2)


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


def _conv_back(step: Step, r: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s, p, d, k, g = step.conv
    new_starts = starts * s - p
    width = (r.shape[-1] - 1) * s + d * (k - 1) + 1
    if step.rule is None:  # plain gradient
        return F.conv_transpose1d(r, step.weight, stride=s, dilation=d, groups=g), new_starts
    x = step.x
    total = torch.zeros(r.shape[0], x.shape[1], width, dtype=r.dtype, device=r.device)
    w = step.weight
    for group, (z, mask) in zip(step.rule.groups(x), step.norms):
        zs = gather(z, starts, r.shape[-1])  # already stabilized; zero only outside the sequence
        sg = r / torch.where(zs == 0, torch.ones_like(zs), zs) * (zs != 0)  # as lrp_backward
        if mask is not None:
            sg = sg * gather(mask, starts, r.shape[-1])
        for t in group.terms:
            xk = gather(t.input(x), new_starts, width)
            total += group.coef * t.scale * xk * F.conv_transpose1d(sg, t.weight(w), stride=s, dilation=d, groups=g)
    return total, new_starts


def backward_frames(steps: list[Step], seeds: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate per-frame output signals ``seeds`` (n, C_out) at output ``frames`` (n,) down the
    chain. Returns input windows ``(n, C_in, width)`` and their start positions."""
    r = seeds[:, :, None]
    starts = frames.clone()
    for step in reversed(steps):
        t_in = step.x.shape[-1]
        if step.kind == "conv":
            r, starts = _conv_back(step, r, starts)
        elif step.kind == "scale":
            r = r * step.weight[None, :, None]
        elif step.kind == "relu":
            if step.rule is DeconvReLU:
                r = r.clamp(min=0)
            elif step.rule is not Pass:
                mask = gather(step.norms[0], starts, r.shape[-1])
                r = (r.clamp(min=0) if step.rule is GuidedReLU else r) * mask
        elif step.kind == "pad":
            starts = starts - step.conv[1]
        r = _mask_outside(r, starts, t_in)
    return r, starts


def chain_frames(model: nn.Module, x: torch.Tensor, todo: list[int], cls: torch.Tensor, plan: Plan, chunk: int,
                 progress=None) -> torch.Tensor:
    """`attribute_frames` on the chain engine (see the module docstring); ``chunk`` frames per step."""
    check_chain(model, x)
    frames = torch.as_tensor(todo, device=x.device)
    n_in = x.shape[-1]
    total, starts = None, None
    for k_point, point in enumerate(plan.points):
        steps, out = build(model, point.input.detach(), plan.backward)
        seeds = torch.zeros(len(todo), out.shape[1], dtype=x.dtype, device=x.device)
        rows = torch.arange(len(todo))
        seeds[rows, cls[frames]] = out[0, cls[frames], frames] if plan.backward.relevance else 1.0
        parts, st = [], []
        with torch.no_grad():
            for k in range(0, len(todo), max(1, chunk)):
                r, s = backward_frames(steps, seeds[k:k + chunk], frames[k:k + chunk])
                parts.append(r)
                st.append(s)
        r, starts = torch.cat(parts), torch.cat(st)
        if point.multiplier is not None:
            r = r * gather(point.multiplier, starts, r.shape[-1])
        if point.weight != 1.0:
            r = r * point.weight
        total = r if total is None else total + r
        if progress:
            progress(k_point + 1, len(plan.points))
    result = torch.zeros(len(todo), *x.shape[1:], dtype=x.dtype, device=x.device)
    for j in range(total.shape[0]):
        a = int(starts[j])
        lo, hi = max(a, 0), min(a + total.shape[-1], n_in)
        result[j, :, lo:hi] = total[j, :, lo - a:hi - a]
    if plan.post is not None:
        result = result * plan.post
    return plan.finish(result) if plan.finish is not None else result
