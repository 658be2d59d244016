"""Composites: which rule each layer gets. Presets follow REFERENCES §2 and Zennit's names.

A composite is resolved against a traced model: ``first`` is the first Linear/Conv layer to run,
``last`` the last one (the output layer of a classifier or a CTC model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .hooks import BN_TYPES, LINEAR_TYPES, PASS_TYPES, POOL_TYPES, Traced
from .rules import (
    ActivationRule,
    AlphaBeta,
    Epsilon,
    Gamma,
    LinearRule,
    Pass,
    ZBox,
    ZPlus,
)

CONV_TYPES = (nn.Conv1d, nn.Conv2d)


@dataclass
class Composite:
    """Rule choice per layer: by layer name first, then by position (first/last), then by type."""

    conv: Callable[[], LinearRule] = Epsilon
    dense: Callable[[], LinearRule] = Epsilon
    first: Callable[[], LinearRule] | None = None
    last: Callable[[], LinearRule] | None = None
    by_name: dict[str, LinearRule] = field(default_factory=dict)
    activation: ActivationRule = Pass
    name: str = "custom"

    def resolve(self, traced: Traced, method: str = "lrp") -> dict[str, LinearRule | ActivationRule]:
        """Module name → rule for every leaf of the traced model; unsupported layers raise."""
        linear = [n for n, m in traced.order if isinstance(m, LINEAR_TYPES)]
        rules: dict[str, LinearRule | ActivationRule] = {}
        for name, m in traced.order:
            if name in rules:
                continue
            if name in self.by_name:
                rules[name] = self.by_name[name]
            elif isinstance(m, LINEAR_TYPES):
                if self.first is not None and linear and name == linear[0]:
                    rules[name] = self.first()
                elif self.last is not None and linear and name == linear[-1]:
                    rules[name] = self.last()
                else:
                    rules[name] = self.conv() if isinstance(m, CONV_TYPES) else self.dense()
            elif isinstance(m, POOL_TYPES):
                rules[name] = Epsilon(1e-9)  # sum-pooling normalization
            elif isinstance(m, nn.ReLU):
                rules[name] = self.activation
            elif isinstance(m, BN_TYPES):
                if name not in traced.folded:
                    raise unsupported(name, m, method, "a BatchNorm that does not directly follow a Conv/Linear layer "
                                      "cannot be folded for LRP")
            elif not isinstance(m, PASS_TYPES):
                raise unsupported(name, m, method)
        return rules


def unsupported(name: str, module: nn.Module, method: str, why: str = "") -> TypeError:
    return TypeError(f"module {name!r} ({type(module).__name__}) is not supported by {method}"
                     f"{': ' + why if why else ''}. Methods that handle any differentiable layer: gradient, "
                     "gradient_x_input, integrated_gradients, smoothgrad, grad_cam")


def _zbox(low, high) -> Callable[[], LinearRule]:
    return lambda: ZBox(low, high)


def preset(name: str, low: torch.Tensor | float | None = None, high: torch.Tensor | float | None = None,
           epsilon: float = 1e-6, gamma: float = 0.25) -> Composite:
    """A named composite: epsilon, epsilon-plus, epsilon-gamma-box, alpha2-beta1, deep-taylor.

    ``low``/``high`` are the z^B bounds of the first layer's input (e.g. per Mel bin)."""
    eps = lambda: Epsilon(epsilon)  # noqa: E731
    needs_box = name in ("epsilon-gamma-box", "deep-taylor")
    if needs_box and (low is None or high is None):
        raise ValueError(f"composite {name!r} needs the input bounds low= and high= for its z^B first layer")
    presets = {
        "epsilon": Composite(eps, eps),
        "epsilon-plus": Composite(ZPlus, eps),
        "epsilon-gamma-box": Composite(lambda: Gamma(gamma), eps, first=_zbox(low, high) if needs_box else None,
                                       last=eps),
        "alpha2-beta1": Composite(lambda: AlphaBeta(2.0, 1.0), eps),
        "deep-taylor": Composite(ZPlus, ZPlus, first=_zbox(low, high) if needs_box else None),
    }
    if name not in presets:
        raise ValueError(f"unknown composite {name!r}; choose from {sorted(presets)}")
    c = presets[name]
    c.name = name
    return c


COMPOSITES = ("epsilon", "epsilon-plus", "epsilon-gamma-box", "alpha2-beta1", "deep-taylor")
