"""The gradient family, modified-backward methods (guided backprop, deconvnet, LRP) and deep Taylor.

Every function takes ``(model, x, target, ...)`` and returns a tensor shaped like ``x``. The
model is run in eval mode and left exactly as it was (see hooks.preserved / hooks.modified).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .composites import Composite, preset, unsupported
from .hooks import BN_TYPES, LINEAR_TYPES, PASS_TYPES, POOL_TYPES, modified, trace
from .rules import DeconvReLU, GuidedReLU
from .targets import Target, output_gradient


def resolve_target(model: nn.Module, x: torch.Tensor, target: Target) -> Target:
    """Turn ``"predicted"`` / ``("predicted", frame)`` into explicit indices (on the unmodified input),
    so repeated or perturbed copies of ``x`` explain the same scores."""
    if isinstance(target, str) or (isinstance(target, tuple) and target and target[0] == "predicted"):
        with torch.no_grad():
            out = model(x)
        g = output_gradient(out, target)
        if g.dim() == 3:
            cls = g[:, :, int(target[1])].argmax(1)
            return torch.stack([cls, torch.full_like(cls, int(target[1]))], 1)
        return g.argmax(1)
    return target


def repeat_target(target: Target, times: int, batch: int) -> Target:
    """The target for ``x`` repeated ``times`` along the batch (block-wise: copy k is rows k·B…)."""
    if isinstance(target, torch.Tensor) and target.dim() >= 1 and target.shape[0] == batch:
        return target.repeat(times, *([1] * (target.dim() - 1)))
    return target


def backward(model: nn.Module, x: torch.Tensor, target: Target, rules: dict | None = None, traced=None,
             canonize: bool = True, scale_by_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradient (or relevance, with rules) of the target scores, and the model output."""
    x = x.detach().requires_grad_(True)
    ctx = modified(model, traced, rules, canonize) if rules else contextlib.nullcontext()
    with ctx:
        out = model(x)
        g = output_gradient(out, target)
        explicit = isinstance(target, torch.Tensor) and target.shape == out.shape and g is not None and \
            target.dtype.is_floating_point
        if scale_by_output and not explicit:
            g = g * out.detach()
        (grad,) = torch.autograd.grad(out, x, g)
    return grad, out.detach()


def gradient(model, x, target, abs: bool = False) -> torch.Tensor:  # noqa: A002 - Captum's name
    """Sensitivity ∂f/∂x (``abs=True``: its magnitude, as Captum's Saliency default)."""
    g, _ = backward(model, x, target)
    return g.abs() if abs else g


def gradient_x_input(model, x, target) -> torch.Tensor:
    """x ⊙ ∂f/∂x."""
    return x.detach() * backward(model, x, target)[0]


def ig_points(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Path positions α and weights of the integral rule (Captum's conventions, except that the
    trapezoid weights sum to 1: Captum's sum to (n−1)/n)."""
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
    raise ValueError(f"unknown integration method {method!r}")


def integrated_gradients(model, x, target, baselines: torch.Tensor | float | None = None, steps: int = 50,
                         integration: str = "gausslegendre", internal_batch_size: int | None = None) -> torch.Tensor:
    """(x − x̄) ⊙ ∫₀¹ ∂f/∂x(x̄ + α(x − x̄)) dα; completeness: Σ attribution ≈ f(x) − f(x̄)."""
    x = x.detach()
    base = torch.zeros_like(x) if baselines is None else torch.as_tensor(baselines, dtype=x.dtype).expand_as(x)
    target = resolve_target(model, x, target)
    alphas, weights = ig_points(steps, integration)
    b = x.shape[0]
    per = max(1, (internal_batch_size or steps * b) // b)
    total = torch.zeros_like(x)
    for k0 in range(0, steps, per):
        a = torch.as_tensor(alphas[k0:k0 + per], dtype=x.dtype)
        w = torch.as_tensor(weights[k0:k0 + per], dtype=x.dtype)
        shape = (-1,) + (1,) * x.dim()
        pts = (base + a.reshape(shape) * (x - base)).reshape(-1, *x.shape[1:])
        g, _ = backward(model, pts, repeat_target(target, len(a), b))
        total += (w.reshape(shape) * g.reshape(len(a), *x.shape)).sum(0)
    return (x - base) * total


SMOOTHGRAD_STDEV, SMOOTHGRAD_SAMPLES = 0.15, 25


def smoothgrad_noise(x: torch.Tensor, options: dict) -> torch.Tensor:
    """The noise SmoothGrad adds to one utterance ``x`` (1, ...): ``(samples, *x.shape[1:])``, from
    ``options`` (``noise`` as given, else drawn from ``seed`` with ``stdev``), as `smoothgrad` draws it."""
    if options.get("noise") is not None:
        return options["noise"].to(x)
    gen = torch.Generator().manual_seed(options.get("seed", 0))
    shape = (options.get("samples", SMOOTHGRAD_SAMPLES), *x.shape[1:])
    return torch.randn(shape, generator=gen, dtype=x.dtype) * options.get("stdev", SMOOTHGRAD_STDEV)


def smoothgrad(model, x, target, stdev: float = SMOOTHGRAD_STDEV, samples: int = SMOOTHGRAD_SAMPLES, seed: int = 0,
               noise: torch.Tensor | None = None, inner: str = "gradient") -> torch.Tensor:
    """Mean of gradients (or gradient×input, ``inner``) at noisy copies x + 𝒩(0, stdev²).

    ``noise`` (``(samples·B, *x.shape[1:])``, sample-major per input row as Captum's NoiseTunnel
    draws it) replaces the seeded draw."""
    x = x.detach()
    b = x.shape[0]
    target = resolve_target(model, x, target)
    if noise is None:
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((b * samples, *x.shape[1:]), generator=gen, dtype=x.dtype) * stdev
    noisy = x.repeat_interleave(samples, dim=0) + noise.to(x)
    tgt = target.repeat_interleave(samples, dim=0) if isinstance(target, torch.Tensor) and target.dim() >= 1 \
        and target.shape[0] == b else target
    g, _ = backward(model, noisy, tgt)
    if inner == "gradient_x_input":
        g = g * noisy
    elif inner != "gradient":
        raise ValueError(f"smoothgrad inner must be 'gradient' or 'gradient_x_input', not {inner!r}")
    return g.reshape(b, samples, *x.shape[1:]).mean(1)


def _relu_rules(model, x, rule, method: str) -> tuple[dict, object]:
    traced = trace(model, x)
    rules = {}
    for name, m in traced.order:
        if isinstance(m, nn.ReLU):
            rules[name] = rule
        elif not isinstance(m, LINEAR_TYPES + BN_TYPES + POOL_TYPES + PASS_TYPES):
            raise unsupported(name, m, method, "it modifies the backward pass of ReLU layers only")
    return rules, traced


def guided_backprop(model, x, target) -> torch.Tensor:
    """Gradient with ReLUs passing only positive signal where their input was positive."""
    rules, traced = _relu_rules(model, x, GuidedReLU, "guided_backprop")
    return backward(model, x, target, rules, traced)[0]


def deconvnet(model, x, target) -> torch.Tensor:
    """Gradient with ReLUs passing only positive signal (ignoring the forward mask)."""
    rules, traced = _relu_rules(model, x, DeconvReLU, "deconvnet")
    return backward(model, x, target, rules, traced)[0]


def lrp(model, x, target, composite: str | Composite = "epsilon", canonize: bool = True,
        low=None, high=None, epsilon: float = 1e-6, gamma: float = 0.25) -> torch.Tensor:
    """Layer-wise relevance propagation; the target score is the initial relevance (Σ R ≈ f(x)).

    BatchNorm after a Conv/Linear is folded into it (``canonize``) for the rules."""
    comp = composite if isinstance(composite, Composite) else preset(composite, low, high, epsilon, gamma)
    traced = trace(model, x)
    rules = comp.resolve(traced, "lrp")
    return backward(model, x, target, rules, traced, canonize, scale_by_output=True)[0]


def _scores(model, x, target) -> torch.Tensor:
    out = model(x)
    return (out * output_gradient(out, target)).flatten(1).sum(1)


def find_root(model, x, target, max_steps: int = 30, tol: float = 1e-4) -> torch.Tensor:
    """Nearest root along the gradient: x₀ = x − t·∇f(x)/‖∇f(x)‖ with f(x₀) ≈ 0 (secant steps on t)."""
    x = x.detach()
    g, _ = backward(model, x, target)
    d = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
    shape = (-1,) + (1,) * (x.dim() - 1)
    with torch.no_grad():
        f0 = _scores(model, x, target)
        t_prev, f_prev = torch.zeros_like(f0), f0
        t = f0 / g.flatten(1).norm(dim=1).clamp_min(1e-12)  # Newton step from x
        for _ in range(max_steps):
            f = _scores(model, x - t.reshape(shape) * d, target)
            if bool((f.abs() <= tol * (1 + f0.abs())).all()):
                break
            slope = (f - f_prev) / torch.where((t - t_prev).abs() > 1e-12, t - t_prev, torch.full_like(t, 1e-12))
            t_new = t - f / torch.where(slope.abs() > 1e-12, slope, torch.full_like(slope, 1e-12))
            t_prev, f_prev, t = t, f, t_new
    return (x - t.reshape(shape) * d).detach()


def deep_taylor(model, x, target, root: torch.Tensor | str | None = None, low=None, high=None,
                canonize: bool = True) -> torch.Tensor:
    """Deep Taylor decomposition.

    ``root=None``: the rule-based form (z^B on the first layer with bounds low/high, z⁺ above).
    ``root`` a tensor: (x − x₀) ⊙ ∇f(x₀) at that root point; ``root="search"``: x₀ from `find_root`.
    """
    if root is None:
        return lrp(model, x, target, "deep-taylor", canonize, low, high)
    target = resolve_target(model, x, target)
    x0 = find_root(model, x, target) if isinstance(root, str) and root == "search" else \
        torch.as_tensor(root, dtype=x.dtype).expand_as(x)
    if isinstance(root, str) and root != "search":
        raise ValueError(f"root must be None, a tensor or 'search', not {root!r}")
    return (x.detach() - x0) * backward(model, x0, target)[0]
