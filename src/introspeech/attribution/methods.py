"""What each local method computes, as a `Plan` every engine evaluates the same way.

A local method's map is ``finish(post ⊙ Σ_k w_k · m_k ⊙ B(x_k))``: backward passes ``B`` (the
plain gradient, or one modified by rules) at input points ``x_k`` with weights ``w_k`` and
per-point multipliers ``m_k``. Gradient: one point ``x``. Gradient×input: ``post = x``.
Integrated gradients: points on the path from the baseline, the integral rule's weights,
``post = x − x̄``. SmoothGrad: noisy copies, weights 1/n (``m_k`` the noisy input for its
gradient×input form). Guided backprop, deconvnet, LRP, deep Taylor: one point, a modified ``B``.
``attribute`` evaluates a plan for explicit targets; `frames.attribute_frames` evaluates the
same plan for every output frame at once (cone.py, colouring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .composites import Composite, preset, unsupported
from .hooks import BN_TYPES, LINEAR_TYPES, PASS_TYPES, POOL_TYPES, Backward, run_backward, trace
from .rules import DeconvReLU, GuidedReLU


@dataclass
class Point:
    """One backward pass of a plan: where it runs, its weight, and what its map is multiplied by."""

    input: torch.Tensor
    weight: float = 1.0
    multiplier: torch.Tensor | None = None


@dataclass
class Plan:
    backward: Backward
    points: list[Point]
    post: torch.Tensor | None = None
    finish: Callable[[torch.Tensor], torch.Tensor] | None = None
    rows: int | None = None  # most rows of one batched backward pass (None: all points at once)
    root: torch.Tensor | None = field(default=None, repr=False)  # deep Taylor's root point, when used


def evaluate(model: nn.Module, plan: Plan, selector: torch.Tensor, scale: bool) -> torch.Tensor:
    """The plan's maps for the scores ``selector`` picks (one row per input row)."""
    x0 = plan.points[0].input
    b = x0.shape[0]
    per = max(1, (plan.rows or len(plan.points) * b) // b)
    total = None
    for k0 in range(0, len(plan.points), per):
        chunk = plan.points[k0:k0 + per]
        inp = torch.cat([p.input for p in chunk]) if len(chunk) > 1 else chunk[0].input
        sel = selector.repeat(len(chunk), *([1] * (selector.dim() - 1)))
        g = run_backward(model, inp, sel, plan.backward, scale).reshape(len(chunk), *x0.shape)
        for k, p in enumerate(chunk):
            term = g[k] * p.multiplier if p.multiplier is not None else g[k]
            term = term * p.weight if p.weight != 1.0 else term
            total = term if total is None else total + term
    if plan.post is not None:
        total = plan.post * total
    return plan.finish(total) if plan.finish is not None else total


def plain(method: str) -> Backward:
    return Backward(method)


# -- the gradient family ---------------------------------------------------------------------------
def gradient(model, x, selector, abs: bool = False) -> Plan:  # noqa: A002 - Captum's name
    """Sensitivity ∂f/∂x (``abs=True``: its magnitude, as Captum's Saliency default)."""
    return Plan(plain("gradient"), [Point(x)], finish=torch.abs if abs else None)


def gradient_x_input(model, x, selector) -> Plan:
    """x ⊙ ∂f/∂x."""
    return Plan(plain("gradient_x_input"), [Point(x)], post=x)


def ig_points(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Path positions α and weights of the integral rule (Captum's conventions, except that the
    trapezoid weights sum to 1: Captum's sum to (n−1)/n)."""
    if steps < 1:
        raise ValueError(f"integrated_gradients needs steps >= 1, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    k = np.arange(steps)
    if method == "riemann_right":
        return (k + 1) / steps, np.full(steps, 1 / steps)
    if method == "riemann_left":
        return k / steps, np.full(steps, 1 / steps)
    if method == "riemann_middle":
        return (k + 0.5) / steps, np.full(steps, 1 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
        return k / (steps - 1), w
    raise ValueError(f"unknown integration method {method!r}; choose from gausslegendre, riemann_left, "
                     "riemann_right, riemann_middle, riemann_trapezoid")


def baseline_of(x: torch.Tensor, baselines) -> torch.Tensor:
    return torch.zeros_like(x) if baselines is None else torch.as_tensor(baselines, dtype=x.dtype).to(x).expand_as(x)


def integrated_gradients(model, x, selector, baselines=None, steps: int = 50, integration: str = "gausslegendre",
                         internal_batch_size: int | None = None) -> Plan:
    """(x − x̄) ⊙ ∫₀¹ ∂f/∂x(x̄ + α(x − x̄)) dα; completeness: Σ attribution ≈ f(x) − f(x̄)."""
    base = baseline_of(x, baselines)
    alphas, weights = ig_points(steps, integration)
    points = [Point(base + float(a) * (x - base), float(w)) for a, w in zip(alphas, weights)]
    return Plan(plain("integrated_gradients"), points, post=x - base, rows=internal_batch_size)


def smoothgrad_noise(x: torch.Tensor, stdev: float = 0.15, samples: int = 25, seed: int = 0) -> torch.Tensor:
    """SmoothGrad's seeded draw for input ``x``: ``(samples·B, *x.shape[1:])``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((x.shape[0] * samples, *x.shape[1:]), generator=gen, dtype=x.dtype) * stdev


def smoothgrad(model, x, selector, stdev: float = 0.15, samples: int = 25, seed: int = 0,
               noise: torch.Tensor | None = None, inner: str = "gradient") -> Plan:
    """Mean of gradients (or gradient×input, ``inner``) at noisy copies x + 𝒩(0, stdev²).

    ``noise`` (``(samples·B, *x.shape[1:])``, sample-major per input row as Captum's NoiseTunnel
    draws it) replaces the seeded draw; the same seed gives every row of a batch its own draw."""
    if inner not in ("gradient", "gradient_x_input"):
        raise ValueError(f"smoothgrad inner must be 'gradient' or 'gradient_x_input', not {inner!r}")
    b = x.shape[0]
    if noise is None:
        noise = smoothgrad_noise(x, stdev, samples, seed)
    elif noise.shape[0] % b or noise.shape[1:] != x.shape[1:]:
        raise ValueError(f"smoothgrad noise must be (samples·{b}, {', '.join(map(str, x.shape[1:]))}), "
                         f"got {tuple(noise.shape)}")
    n = noise.shape[0] // b
    per_row = noise.to(x).reshape(b, n, *x.shape[1:])
    points = []
    for k in range(n):
        noisy = x + per_row[:, k]
        points.append(Point(noisy, 1.0 / n, noisy if inner == "gradient_x_input" else None))
    return Plan(plain("smoothgrad"), points)


# -- modified backward passes ----------------------------------------------------------------------
def relu_backward(model, x, rule, method: str) -> Backward:
    traced = trace(model, x)
    rules = {}
    for name, m in traced.order:
        if isinstance(m, nn.ReLU):
            rules[name] = rule
        elif not isinstance(m, LINEAR_TYPES + BN_TYPES + POOL_TYPES + PASS_TYPES + (nn.LayerNorm, nn.GroupNorm)):
            raise unsupported(name, m, method, "it modifies the backward pass of ReLU layers only")
    return Backward(method, rules, traced, activation=rule)


def guided_backprop(model, x, selector) -> Plan:
    """Gradient with ReLUs passing only positive signal where their input was positive."""
    return Plan(relu_backward(model, x, GuidedReLU, "guided_backprop"), [Point(x)])


def deconvnet(model, x, selector) -> Plan:
    """Gradient with ReLUs passing only positive signal (ignoring the forward mask)."""
    return Plan(relu_backward(model, x, DeconvReLU, "deconvnet"), [Point(x)])


def composite_of(composite: str | Composite, low, high, epsilon: float, gamma: float, favour: str,
                 attention: str = "attnlrp") -> Composite:
    if isinstance(composite, Composite):
        return composite
    return preset(composite, low, high, epsilon, gamma, favour, attention)


def lrp(model, x, selector, composite: str | Composite = "epsilon", canonize: bool = True, low=None, high=None,
        epsilon: float = 1e-6, gamma: float = 0.25, favour: str = "output", attention: str = "attnlrp") -> Plan:
    """Layer-wise relevance propagation; the target score is the initial relevance (Σ R ≈ f(x)).

    BatchNorm after a Conv/Linear is folded into it (``canonize``) for the rules. ``epsilon``,
    ``gamma``, ``favour``, ``attention`` and ``low``/``high`` configure a preset ``composite`` (a
    `Composite` object carries its own rules). ``attention``: ``"attnlrp"`` (AttnLRP, relevance
    through the softmax) or ``"cp"`` (CP-LRP, attention weights held constant)."""
    if isinstance(composite, Composite) and attention != "attnlrp":
        raise ValueError("attention= configures a preset composite; a Composite object carries its own "
                         "(Composite.attention)")
    comp = composite_of(composite, low, high, epsilon, gamma, favour, attention)
    return Plan(comp.backward(trace(model, x), "lrp", canonize), [Point(x)])


def scores(model: nn.Module, x: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """Σ selector ⊙ f(x) per row."""
    with torch.no_grad():
        return (model(x) * selector).flatten(1).sum(1)


def find_root(model, x, selector: torch.Tensor, max_steps: int = 30, tol: float = 1e-4) -> torch.Tensor:
    """Nearest root along the gradient: x₀ = x − t·∇f(x)/‖∇f(x)‖ with f(x₀) ≈ 0 (secant steps on t)."""
    x = x.detach()
    g = run_backward(model, x, selector, plain("deep_taylor"))
    d = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
    shape = (-1,) + (1,) * (x.dim() - 1)
    f0 = scores(model, x, selector)
    t_prev, f_prev = torch.zeros_like(f0), f0
    t = f0 / g.flatten(1).norm(dim=1).clamp_min(1e-12)  # Newton step from x
    for _ in range(max_steps):
        f = scores(model, x - t.reshape(shape) * d, selector)
        if bool((f.abs() <= tol * (1 + f0.abs())).all()):
            break
        slope = (f - f_prev) / torch.where((t - t_prev).abs() > 1e-12, t - t_prev, torch.full_like(t, 1e-12))
        t_new = t - f / torch.where(slope.abs() > 1e-12, slope, torch.full_like(slope, 1e-12))
        t_prev, f_prev, t = t, f, t_new
    return (x - t.reshape(shape) * d).detach()


def deep_taylor(model, x, selector, root: torch.Tensor | str | None = None, low=None, high=None,
                canonize: bool = True) -> Plan:
    """Deep Taylor decomposition.

    ``root=None``: the rule-based form (z^B on the first layer with bounds low/high, z⁺ above).
    ``root`` a tensor: (x − x₀) ⊙ ∇f(x₀) at that root point; ``root="search"``: x₀ from `find_root`.
    """
    if root is None:
        return lrp(model, x, selector, "deep-taylor", canonize, low, high)
    if isinstance(root, str):
        if root != "search":
            raise ValueError(f"root must be None, a tensor or 'search', not {root!r}")
        x0 = find_root(model, x, selector)
    else:
        x0 = torch.as_tensor(root, dtype=x.dtype).to(x).expand_as(x)
    return Plan(plain("deep_taylor"), [Point(x0)], post=x - x0, root=x0)
