"""The optimization loop: maximize an objective over a parameterized, bounded input (Adam), with
penalties and transformation robustness; deterministic for a seed; the model is left untouched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attribution.cam import find_layer
from ..attribution.hooks import preserved
from .objectives import Objective
from .param import Bounded, Direct, Fourier
from .regularize import Penalties, Robustness, gaussian_blur, penalty, transform


@dataclass
class Visualization:
    """The optimized input ``(1, …)``, the objective it reaches (untransformed), its history."""

    input: torch.Tensor
    objective: float
    history: list[float] = field(default_factory=list)


def _forward(model: nn.Module, x: torch.Tensor, layers: set[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    acts: dict[str, torch.Tensor] = {}
    handles = [find_layer(model, n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o)) for n in layers]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return acts, out


def evaluate(model: nn.Module, objective: Objective, x: torch.Tensor) -> float:
    """The objective's value for an input (no transformations, no gradient)."""
    with preserved(model), torch.no_grad():
        acts, out = _forward(model, x, objective.layers)
        return float(objective(acts, out).mean())


def visualize(model: nn.Module, objective: Objective, shape: tuple[int, ...], low: torch.Tensor | float = -3.0,
              high: torch.Tensor | float = 3.0, parameterization: str = "fourier", steps: int = 256, lr: float = 0.05,
              penalties: Penalties = Penalties(), robustness: Robustness = Robustness(), image: bool = False,
              seed: int = 0, decay: float = 1.0, decoder: nn.Module | None = None,
              progress: Callable[[int, float], None] | None = None) -> Visualization:
    """Maximize ``objective`` over inputs of ``shape`` (batch first, e.g. ``(1, n_mels, frames)``)
    kept in [low, high]. ``parameterization``: ``direct``, ``fourier`` or ``prior`` (then
    ``decoder`` maps a latent of ``shape`` to an input: optimization runs in its latent space)."""
    g = torch.Generator().manual_seed(seed)
    if parameterization == "direct":
        param: nn.Module = Direct(shape, generator=g)
    elif parameterization == "fourier":
        param = Fourier(shape, decay=decay, generator=g)
    elif parameterization == "prior":
        if decoder is None:
            raise ValueError("parameterization 'prior' needs a decoder (a trained prior)")
        param = Direct(shape, scale=1.0, generator=g)
    else:
        raise ValueError(f"parameterization must be direct, fourier or prior, not {parameterization!r}")
    bound = Bounded(low, high)
    frozen = [p.requires_grad for p in model.parameters()]
    opt = torch.optim.Adam(param.parameters(), lr=lr)

    def make() -> torch.Tensor:
        raw = param()
        return decoder(raw) if decoder is not None and parameterization == "prior" else bound(raw)

    history: list[float] = []
    with preserved(model):
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            for step in range(steps):
                x = make()
                seen = transform(x, robustness, g, image)
                acts, out = _forward(model, seen, objective.layers)
                value = objective(acts, out).mean()
                loss = -value + penalty(x, penalties)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if penalties.blur and parameterization == "direct":
                    with torch.no_grad():
                        param.raw.copy_(gaussian_blur(param.raw, penalties.blur))
                history.append(float(value.detach()))
                if progress:
                    progress(step, float(value))
        finally:
            for p, f in zip(model.parameters(), frozen):
                p.requires_grad_(f)
    with torch.no_grad():
        x = make().detach()
    return Visualization(x, evaluate(model, objective, x), history)
