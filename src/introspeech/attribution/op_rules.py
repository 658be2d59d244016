"""Per-operation rules of attention models (AttnLRP, CP-LRP), in relevance form.

Each rule maps the relevance ``R`` of an operation's output to the relevance of each of its
inputs (None for an input held constant). They are the small, declarative counterparts of the
layer rules in rules.py, for operations that are not linear in one input:

    Uniform        z = a ⊙ b (⊙ …), every factor input-dependent:  R_a = R_b = R / n
                   (AttnLRP's uniform rule; a factor broadcast over an axis sums its share)
    Bilinear       z = c · a @ b:  contributions z_ijk = c·a_ik·b_kj, ε-normalized over k, then a
                   share of each to a and to b: R_a = s_a · a ⊙ (c · S @ bᵀ), R_b = s_b · b ⊙ (c · aᵀ @ S),
                   S = R / stab(z). AttnLRP: s_a = s_b = ½; a constant factor gets 0 and the other 1
                   (the ε-rule of a linear map: CP-LRP's A·v with the attention weights held)
    Softmax        s = softmax(x):  R_x = x ⊙ (R − s · Σ R)  along the softmax axis (AttnLRP: the
                   softmax differentiated, in gradient×input form; 0 where s = 0, i.e. masked logits)
    AddConstant    z = x + c, c constant (a mask, fixed positions):  R_x = x ⊙ R / stab(z)
                   (the ε-rule of a sum whose constant term is a bias)

Elementwise nonlinearities of one input (GELU, SiLU, sigmoid, tanh) use the activation rule
``Pass`` (identity: relevance passes unchanged), and normalizations (LayerNorm, GroupNorm,
RMSNorm) a `rules.LinearRule` on the map that holds their standard deviation constant
(attention.py). References: Achtibat et al. 2024 (AttnLRP), Ali et al. 2022 (CP-LRP), Arras et
al. 2025 (the gradient×input form). ``VARIANTS`` names the two ways through softmax attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .propagate import unbroadcast

Tensor = torch.Tensor
VARIANTS = ("attnlrp", "cp")
"""``attnlrp``: relevance through the softmax (query and key share it); ``cp``: the attention
weights held constant (conservative propagation), all relevance of a head to its values."""


def _stab(z: Tensor, epsilon: float) -> Tensor:
    return z + epsilon * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def _divide(r: Tensor, d: Tensor) -> Tensor:
    return r / torch.where(d == 0, torch.ones_like(d), d) * (d != 0)


@dataclass(frozen=True)
class Uniform:
    """Product of input-dependent factors: each receives an equal share."""

    name: str = "uniform"

    def relevance(self, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor]:
        share = r / len(inputs)
        return [unbroadcast(share, t.shape) for t in inputs]


@dataclass(frozen=True)
class Bilinear:
    """``z = scale · a @ b`` (batched matmul): ε-rule over the summed index, then shares to a and b."""

    share_a: float = 0.5
    share_b: float = 0.5
    scale: float = 1.0
    epsilon: float = 1e-6
    name: str = "bilinear"

    def relevance(self, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor | None]:
        a, b = inputs
        s = _divide(r, _stab(out, self.epsilon)) * self.scale
        ra = unbroadcast(self.share_a * a * (s @ b.transpose(-1, -2)), a.shape) if self.share_a else None
        rb = unbroadcast(self.share_b * b * (a.transpose(-1, -2) @ s), b.shape) if self.share_b else None
        return [ra, rb]


@dataclass(frozen=True)
class Softmax:
    """AttnLRP's softmax rule along ``dim``."""

    dim: int = -1
    name: str = "softmax"

    def relevance(self, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor]:
        (x,) = inputs
        inner = r - out * r.sum(self.dim, keepdim=True)
        return [torch.where(out > 0, x * inner, torch.zeros_like(inner))]


@dataclass(frozen=True)
class AddConstant:
    """``x + c`` with ``c`` constant: the constant absorbs its share like a bias."""

    epsilon: float = 1e-6
    name: str = "add-constant"
    absorbs = True  # what the input does not receive, the constant absorbed (a bias)

    def relevance(self, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor]:
        (x,) = inputs
        finite = torch.isfinite(out)
        safe = torch.where(finite, out, torch.ones_like(out))
        rx = torch.where(finite, x * _divide(r, _stab(safe, self.epsilon)), torch.zeros_like(r))
        return [unbroadcast(rx, x.shape)]


@dataclass(frozen=True)
class Conserve:
    """An operation with one input-dependent argument that relevance passes through unchanged (a
    product with, or a division by, a constant): each element's relevance to its source element,
    summed where the input was broadcast."""

    name: str = "conserve"

    def relevance(self, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor]:
        return [unbroadcast(r, inputs[0].shape)]
