"""Fast path of `attribute_frames` for chains of 1-D layers: a backward pass restricted to each
frame's cone.

For a model whose leaves run one after another (Conv1d, BatchNorm1d, ReLU, ConstantPad1d,
Dropout, Identity — the Wav2Letter family), the forward pass is computed once; then the backward
signal of many frames is propagated together, each frame carrying only the window of positions
that can reach it (1 position at the output, the receptive field at the input). Every step is the
same linear map the rule-driven autograd backward applies (transposed convolutions with the
rule's modified weights, normalizers cut from one full-length forward of each rule term), so the
result equals the per-frame computation; only the work outside the cones is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .composites import Composite, preset
from .hooks import folded_params, trace
from .rules import ActivationRule, DeconvReLU, Gradient, GuidedReLU, LinearRule, Pass

SUPPORTED = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.ConstantPad1d, nn.Dropout, nn.Identity)


@dataclass
class Step:
    """One leaf layer of the chain and what its backward needs from the forward pass."""

    kind: str  # conv | bn | relu | pad | skip
    module: nn.Module
    x: torch.Tensor  # the layer's input (1, C, T), from the forward pass
    rule: LinearRule | ActivationRule | None = None
    weight: torch.Tensor | None = None  # folded for LRP
    bias: torch.Tensor | None = None
    norms: list | None = None  # per group: full-length normalizer Z_g (1, C_out, T_out)


def chain_trace(model: nn.Module, x: torch.Tensor):
    """The traced model when it is a chain of supported 1-D layers (else None)."""
    traced = trace(model, x)
    if x.dim() != 3 or not traced.chain or not all(isinstance(m, SUPPORTED) for _, m in traced.order):
        return None
    return traced


def build(model: nn.Module, x: torch.Tensor, method: str, composite: Composite | None, traced) -> list[Step]:
    """Forward once, recording each step's input and (for LRP) its rule's normalizers.

    BatchNorm after a Conv1d is folded into the transposed weights: for LRP (normalizers with the
    folded layer) and, as a plain scale, for gradients."""
    rules: dict = {}
    if method == "lrp":
        rules = composite.resolve(traced, "lrp")
    act = {"guided_backprop": GuidedReLU, "deconvnet": DeconvReLU, "lrp": Pass}.get(method, Gradient)
    folded_into = {lin: bn for bn, lin in traced.folded.items()}
    folded_bns = set(folded_into.values())
    steps: list[Step] = []
    h = x
    with torch.no_grad():
        for name, m in traced.order:
            if isinstance(m, nn.Conv1d):
                if m.padding_mode != "zeros" or m.groups != 1 or isinstance(m.padding, str):
                    raise ValueError(f"layer {name!r}: only zero-padded, ungrouped Conv1d with numeric padding")
                bn = dict(traced.order)[folded_into[name]] if name in folded_into else None
                w, b = folded_params(m, bn)
                step = Step("conv", m, h, rules.get(name), w.detach(), None if b is None else b.detach())
                if method == "lrp":
                    step.norms = []
                    for group in step.rule.groups(h):
                        z = sum(t.scale * F.conv1d(t.input(h), t.weight(w), t.bias(b) if (b is not None and t.bias)
                                                   else None, m.stride, m.padding, m.dilation) for t in group.terms)
                        step.norms.append(step.rule.stabilize(z))
                steps.append(step)
                h = F.conv1d(h, w, b, m.stride, m.padding, m.dilation) if method == "lrp" else m(h)
            elif isinstance(m, nn.BatchNorm1d):
                steps.append(Step("skip" if name in folded_bns else "bn", m, h))
                h = h if name in folded_bns and method == "lrp" else m(h)
            elif isinstance(m, nn.ReLU):
                step = Step("relu", m, h, act)
                if act in (Gradient, GuidedReLU):
                    step.norms = [(h > 0).to(h.dtype)]  # the forward mask, cut per frame later
                steps.append(step)
                h = m(h)
            elif isinstance(m, nn.ConstantPad1d):
                steps.append(Step("pad", m, h))
                h = m(h)
            else:  # Dropout (eval) and Identity
                steps.append(Step("skip", m, h))
                h = m(h)
    return steps


def _gather(full: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
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
    m = step.module
    s, d, p, k = m.stride[0], m.dilation[0], m.padding[0], m.kernel_size[0]
    new_starts = starts * s - p
    width = (r.shape[-1] - 1) * s + d * (k - 1) + 1
    if step.rule is None:  # plain gradient
        return F.conv_transpose1d(r, step.weight, stride=s, dilation=d), new_starts
    x = step.x
    total = torch.zeros(r.shape[0], x.shape[1], width, dtype=r.dtype, device=r.device)
    w = step.weight
    for group, z in zip(step.rule.groups(x), step.norms):
        zs = _gather(z, starts, r.shape[-1])  # already stabilized; zero only outside the sequence
        sg = r / torch.where(zs == 0, torch.ones_like(zs), zs)
        for t in group.terms:
            xk = _gather(t.input(x), new_starts, width)
            total += group.coef * t.scale * xk * F.conv_transpose1d(sg, t.weight(w), stride=s, dilation=d)
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
        elif step.kind == "bn":
            m = step.module
            scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
            r = r * scale.detach()[None, :, None]
        elif step.kind == "relu":
            if step.rule is Pass:
                pass
            elif step.rule is DeconvReLU:
                r = r.clamp(min=0)
            else:
                mask = _gather(step.norms[0], starts, r.shape[-1])
                r = (r.clamp(min=0) if step.rule is GuidedReLU else r) * mask
        elif step.kind == "pad":
            starts = starts - step.module.padding[0]
        r = _mask_outside(r, starts, t_in)
    return r, starts


def lrp_composite(options: dict) -> Composite:
    comp = options.get("composite", "epsilon")
    if isinstance(comp, Composite):
        return comp
    return preset(comp, options.get("low"), options.get("high"), options.get("epsilon", 1e-6),
                  options.get("gamma", 0.25))


def chain_frames(model: nn.Module, x: torch.Tensor, out: torch.Tensor, todo: list[int], cls: torch.Tensor, name: str,
                 chunk: int, progress=None, traced=None, **options) -> torch.Tensor:
    """`attribute_frames` on the chain engine (see the module docstring); ``chunk`` frames per step."""
    from .methods import ig_points, smoothgrad_noise

    frames = torch.as_tensor(todo, device=x.device)
    n_in = x.shape[-1]

    def windows(xin: torch.Tensor, method: str, scale: bool = False, composite: Composite | None = None):
        """Input windows ``(n, C, W)`` of every requested frame and their start positions."""
        steps = build(model, xin, method, composite, traced or trace(model, xin))
        with torch.no_grad():
            seeds = torch.zeros(len(todo), out.shape[1], dtype=x.dtype, device=x.device)
            seeds[torch.arange(len(todo)), cls[frames]] = out[0, cls[frames], frames] if scale else 1.0
            parts, starts = [], []
            for k in range(0, len(todo), max(1, chunk)):
                r, st = backward_frames(steps, seeds[k:k + chunk], frames[k:k + chunk])
                parts.append(r)
                starts.append(st)
                if progress:
                    progress(min(k + chunk, len(todo)), len(todo))
        return torch.cat(parts), torch.cat(starts)

    def paste(r: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        result = torch.zeros(len(todo), *x.shape[1:], dtype=x.dtype, device=x.device)
        for j in range(r.shape[0]):
            a = int(starts[j])
            lo, hi = max(a, 0), min(a + r.shape[-1], n_in)
            result[j, :, lo:hi] = r[j, :, lo - a:hi - a]
        return result

    def run(xin: torch.Tensor, method: str, scale: bool = False, composite: Composite | None = None) -> torch.Tensor:
        return paste(*windows(xin, method, scale, composite))

    x = x.detach()
    if name in ("gradient", "guided_backprop", "deconvnet"):
        return run(x, name)
    if name == "gradient_x_input":
        return run(x, "gradient") * x
    if name == "lrp":
        return run(x, "lrp", True, lrp_composite(options))
    if name == "deep_taylor":
        root = options.get("root")
        if root is None:
            return run(x, "lrp", True, preset("deep-taylor", options.get("low"), options.get("high")))
        x0 = torch.as_tensor(root, dtype=x.dtype).expand_as(x)
        return (x - x0) * run(x0, "gradient")
    if name == "integrated_gradients":
        base = options.get("baselines")
        base = torch.zeros_like(x) if base is None else torch.as_tensor(base, dtype=x.dtype).expand_as(x)
        alphas, weights = ig_points(options.get("steps", 50), options.get("integration", "gausslegendre"))
        total, starts = None, None
        for a, w in zip(alphas, weights):  # accumulate the windows; paste once
            r, starts = windows(base + float(a) * (x - base), "gradient")
            total = float(w) * r if total is None else total + float(w) * r
        return (x - base) * paste(total, starts)
    if name == "smoothgrad":
        noise = smoothgrad_noise(x, options)
        inner = options.get("inner", "gradient")
        total = None
        for k in range(noise.shape[0]):
            noisy = x + noise[k:k + 1].to(x)
            r, starts = windows(noisy, "gradient")
            if inner == "gradient_x_input":
                r = r * _gather(noisy, starts, r.shape[-1])
            total = r if total is None else total + r
        return paste(total / noise.shape[0], starts)
    raise ValueError(f"method {name!r} is not available on the chain engine")
