"""Declarative rules: how a layer's backward pass is modified (the Zennit idea, written anew).

A linear-layer rule (for Conv1d/2d, Linear, and BatchNorm folded into them) is a list of
*groups*; each group is a list of *terms* and a coefficient. A term says how to modify the layer's
input and parameters. For one group with terms k, a layer z = f(x; W, b) and relevance R of its
outputs, the relevance of its inputs is

    Z   = Σ_k f(x_k; W_k, b_k)                 (the group's normalizer)
    R_x = Σ_k x_k ⊙ VJP_{f(·; W_k)}(R / stab(Z))

and the rule's result is Σ_groups coef · R_x. This covers every rule of REFERENCES §2:

    ε           one term (x, W, b); stab(z) = z + ε·sign(z)
    γ           (x, W, b) + γ·[(x⁺, W⁺, b⁺) + (x⁻, W⁻, 0)]   for outputs z ≥ 0, and with
                favour="output" (the default) (x, W, b) + γ·[(x⁺, W⁻, b⁻) + (x⁻, W⁺, 0)] for z < 0
    αβ          α·[(x⁺, W⁺, b⁺) + (x⁻, W⁻)] − β·[(x⁺, W⁻, b⁻) + (x⁻, W⁺)]
    z⁺          [(x⁺, W⁺) + (x⁻, W⁻)]   (= x·W⁺ / Σ x·W⁺ for x ≥ 0)
    z^B         [(x, W) + (l, −W⁺) + (h, −W⁻)]   with bounds l ≤ x ≤ h per input feature
    w²          [(1, W²)]        flat: [(1, 1)]

Activation rules say how a ReLU passes the backward signal: ``Pass`` (identity, for LRP),
``GuidedReLU`` (positive signal where the input was positive), ``DeconvReLU`` (positive signal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor
InputMod = Callable[[Tensor], Tensor]
ParamMod = Callable[[Tensor], Tensor]


def _identity(t: Tensor) -> Tensor:
    return t


IDENTITY = _identity
"""The unmodified input or parameter of a `Term`."""


def _pos(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _neg(t: Tensor) -> Tensor:
    return t.clamp(max=0)


def _ones(t: Tensor) -> Tensor:
    return torch.ones_like(t)


def _zero(t: Tensor) -> Tensor:
    return torch.zeros_like(t)


def _square(t: Tensor) -> Tensor:
    return t * t


@dataclass(frozen=True)
class Term:
    """One modified forward pass: input modifier, weight modifier, bias modifier (None: no bias)."""

    input: InputMod = _identity
    weight: ParamMod = _identity
    bias: ParamMod | None = _identity
    scale: float = 1.0  # multiplies the term (e.g. γ)


@dataclass(frozen=True)
class Group:
    """Terms sharing one normalizer, weighted by ``coef`` in the rule's result.

    ``sign`` restricts the group to some outputs: +1 those whose plain output f(x; W, b) is ≥ 0,
    −1 those where it is < 0, 0 all (a rule whose groups differ by sign covers each output once)."""

    terms: tuple[Term, ...]
    coef: float = 1.0
    sign: int = 0

    def mask(self, plain: Tensor) -> Tensor | None:
        """Which outputs the group explains (None: all), from the layer's plain output."""
        if self.sign == 0:
            return None
        return (plain >= 0).to(plain.dtype) if self.sign > 0 else (plain < 0).to(plain.dtype)


class LinearRule:
    """Base of the rules for layers with weights (and for BatchNorm folded into them)."""

    name = "rule"
    epsilon: float = 1e-9

    def groups(self, x: Tensor) -> tuple[Group, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def stabilize(self, z: Tensor) -> Tensor:
        """Keep the normalizer away from zero (sign-preserving; sign(0) counts as +)."""
        sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        return z + self.epsilon * sign

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


class Epsilon(LinearRule):
    """LRP-ε (ε = 0: LRP-0, which equals gradient×input on bias-free ReLU nets)."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        return (Group((Term(),)),)


class Gamma(LinearRule):
    """LRP-γ: contributions amplified by γ when they share the sign ``favour`` asks for.

    ``favour="output"`` (the default, as Zennit ≥ 0.5): contributions of the output's own sign
    (positive ones for z ≥ 0, negative ones for z < 0), so the normalizer never moves towards zero
    and relevance keeps its sign. ``favour="positive"``: positive contributions for every output (the
    original rule, written for post-ReLU layers whose negative outputs carry no relevance)."""

    name = "gamma"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6, favour: str = "output"):
        if favour not in ("output", "positive"):
            raise ValueError(f"Gamma favour must be 'output' or 'positive', not {favour!r}")
        self.gamma, self.epsilon, self.favour = gamma, epsilon, favour

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        g = self.gamma
        positive = (Term(), Term(_pos, _pos, _pos, g), Term(_neg, _neg, None, g))
        if self.favour == "positive":
            return (Group(positive),)
        negative = (Term(), Term(_pos, _neg, _neg, g), Term(_neg, _pos, None, g))
        return (Group(positive, sign=1), Group(negative, sign=-1))


class AlphaBeta(LinearRule):
    """LRP-αβ with α − β = 1: positive and negative contributions normalized separately."""

    name = "alpha-beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-9):
        if abs(alpha - beta - 1) > 1e-9:
            raise ValueError(f"LRP-αβ needs alpha - beta = 1, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta, self.epsilon = alpha, beta, epsilon

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        pos = Group((Term(_pos, _pos, _pos), Term(_neg, _neg, None)), self.alpha)
        neg = Group((Term(_pos, _neg, _neg), Term(_neg, _pos, None)), -self.beta)
        return (pos, neg) if self.beta else (pos,)


class ZPlus(LinearRule):
    """z⁺ (deep Taylor for non-negative inputs): only positive contributions, no bias."""

    name = "zplus"

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        return (Group((Term(_pos, _pos, None), Term(_neg, _neg, None))),)


class ZBox(LinearRule):
    """z^B (deep Taylor for bounded inputs l ≤ x ≤ h, e.g. per Mel bin): the first-layer rule.

    ``low``/``high`` broadcast against the layer input without its batch dimension (for
    spectrograms ``(n_mels, 1)``: one bound per Mel bin, the same at every time)."""

    name = "zbox"

    def __init__(self, low: Tensor | float, high: Tensor | float, epsilon: float = 1e-9):
        self.low, self.high, self.epsilon = torch.as_tensor(low), torch.as_tensor(high), epsilon

    def _bound(self, b: Tensor) -> InputMod:
        return lambda x: b.to(x).expand_as(x)

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        if torch.any(x < self.low.to(x) - 1e-6) or torch.any(x > self.high.to(x) + 1e-6):
            raise ValueError("z^B rule: input lies outside its bounds [low, high]; widen the bounds")
        return (Group((Term(_identity, _identity, None), Term(self._bound(self.low), lambda w: -_pos(w), None),
                       Term(self._bound(self.high), lambda w: -_neg(w), None))),)


class WSquare(LinearRule):
    """w²: relevance spread by squared weights, independent of the input (unbounded inputs)."""

    name = "wsquare"

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        return (Group((Term(_ones, _square, None),)),)


class Flat(LinearRule):
    """flat: relevance spread uniformly over each output's receptive field (w = 1)."""

    name = "flat"

    def groups(self, x: Tensor) -> tuple[Group, ...]:
        return (Group((Term(_ones, _ones, None),)),)


# -- activations ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationRule:
    """How a ReLU passes the backward signal ``g`` given its forward input ``x``."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor] = field(compare=False)

    def backward(self, x: Tensor, g: Tensor) -> Tensor:
        return self.fn(x, g)


Pass = ActivationRule("pass", lambda x, g: g)
Gradient = ActivationRule("gradient", lambda x, g: g * (x > 0).to(g))
GuidedReLU = ActivationRule("guided", lambda x, g: g.clamp(min=0) * (x > 0).to(g))
DeconvReLU = ActivationRule("deconv", lambda x, g: g.clamp(min=0))

RULES: dict[str, Callable[..., LinearRule]] = {
    "epsilon": Epsilon, "gamma": Gamma, "alpha-beta": AlphaBeta, "zplus": ZPlus, "zbox": ZBox,
    "wsquare": WSquare, "flat": Flat,
}
