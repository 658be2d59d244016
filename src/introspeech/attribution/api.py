"""One entry point for every method: ``attribute(model, inputs, target, method=..., **options)``."""

from __future__ import annotations

import torch
from torch import nn

from . import methods as m
from .definitions import ALIASES, LOCAL_METHODS, METHODS, Method
from .definitions import method as lookup
from .hooks import preserved
from .outputs import require_scores
from .targets import Target, output_gradient

__all__ = ["attribute", "selection", "expected_total", "METHODS", "LOCAL_METHODS", "ALIASES", "lookup"]


def selection(model: nn.Module, x: torch.Tensor, target: Target) -> tuple[torch.Tensor, bool]:
    """The output-shaped selector of the target scores at ``x`` and whether the user gave it
    explicitly (an output gradient: then it is the initial relevance as given, not scaled)."""
    with torch.no_grad():
        out = require_scores(model(x.detach()))  # "predicted" targets are resolved on this output
    explicit = isinstance(target, torch.Tensor) and target.shape == out.shape and target.dtype.is_floating_point
    return output_gradient(out, target).detach(), explicit


def expected_total(model: nn.Module, spec: Method, plan: m.Plan, x: torch.Tensor, selector: torch.Tensor,
                   explicit: bool, options: dict) -> torch.Tensor:
    """What Σ map should equal per row by the method's completeness property."""
    kind = spec.completeness(options)
    if not kind:
        with_one = [n for n, d in METHODS.items() if d.completeness(d.defaults())]
        raise ValueError(f"method {spec.name!r} has no completeness property, so no convergence delta; "
                         "methods that have one: " + ", ".join(with_one))
    if kind == "score":
        if explicit:
            return selector.flatten(1).sum(1)
        return m.scores(model, x, selector)
    ref = m.baseline_of(x, options["baselines"]) if kind == "score-baseline" else plan.root
    return m.scores(model, x, selector) - m.scores(model, ref, selector)


def attribute(model: nn.Module, inputs: torch.Tensor, target: Target, method: str = "gradient",
              return_convergence_delta: bool = False, **options) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attribution map shaped like ``inputs`` for each row's target.

    Targets: a class index for ``(B, C)`` outputs; a ``(class, frame)`` pair for ``(B, C, T)``
    outputs; a tensor of per-row targets; ``"predicted"`` / ``("predicted", frame)``; or an explicit
    output-gradient tensor. Methods and their options: `definitions.METHODS`. With
    ``return_convergence_delta``, also returns Σ map − the total the method should conserve, per row
    (integrated gradients: f(x) − f(x̄); LRP and rule-based deep Taylor: f(x), biases and
    stabilizers absorb the rest; deep Taylor at a root: f(x) − f(x₀)).
    The model runs in eval mode and is left exactly as it was, also when an exception is raised.

    >>> maps = attribute(model, x, target=(letter, frame), method="lrp", composite="epsilon-plus")
    >>> maps, delta = attribute(model, x, 3, "integrated_gradients", steps=64, return_convergence_delta=True)
    """
    spec = lookup(method)
    opts = spec.resolve(options)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise ValueError(f"inputs must be a batched tensor (batch, ...), got {type(inputs).__name__} "
                         f"{tuple(getattr(inputs, 'shape', ()))}")
    x = inputs.detach()
    with preserved(model):
        if spec.compute is not None:
            if return_convergence_delta:
                expected_total(model, spec, None, x, None, False, opts)  # raises: CAMs have no completeness
            return spec.compute(model, x, target, **opts)
        selector, explicit = selection(model, x, target)
        plan = spec.plan(model, x, selector, **opts)
        maps = m.evaluate(model, plan, selector, plan.backward.relevance and not explicit)
        if not return_convergence_delta:
            return maps
        delta = maps.flatten(1).sum(1) - expected_total(model, spec, plan, x, selector, explicit, opts)
        return maps, delta

