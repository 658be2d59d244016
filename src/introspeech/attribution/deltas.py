"""Completeness checks, as Captum's ``return_convergence_delta``: how much of the target score a
map accounts for, and for LRP where the rest went, layer by layer.

`attribute(..., return_convergence_delta=True)` gives the total delta (Σ map − what the method
should conserve). `conservation` follows LRP through the network: for every ruled layer, the
relevance reaching its output, the relevance it passes to its input, the share its biases absorb,
and the share the stabilizer (ε) absorbs, so ``out = in + bias + stabilizer`` holds per layer.
In attention models the per-operation rules report too, named ``<rule>#<k>`` in execution order
(``softmax#1``, ``bilinear#2``, ``layer_norm#1``, ``add-constant#1`` …): what a constant added to a
tensor absorbs counts as bias, and the "stabilizer" of a softmax is what AttnLRP's softmax rule
does not conserve (CP-LRP holds the softmax, so no relevance enters it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .api import selection
from .definitions import method as lookup
from .hooks import preserved, run_backward
from .targets import Target


@dataclass(frozen=True)
class LayerRelevance:
    """Per-row sums of one layer's relevance (tensors of the batch size)."""

    layer: str
    relevance_out: torch.Tensor
    relevance_in: torch.Tensor
    bias: torch.Tensor

    @property
    def stabilizer(self) -> torch.Tensor:
        return self.relevance_out - self.relevance_in - self.bias


def conservation(model: nn.Module, inputs: torch.Tensor, target: Target, method: str = "lrp",
                 **options) -> list[LayerRelevance]:
    """Relevance bookkeeping of every ruled layer, output layer first (the backward order).

    >>> for layer in conservation(model, x, (letter, frame), composite="epsilon"):
    ...     print(layer.layer, float(layer.relevance_out), float(layer.bias), float(layer.stabilizer))
    """
    spec = lookup(method)
    opts = spec.resolve(options)
    if spec.plan is None:
        raise ValueError(f"method {spec.name!r} has no layer-wise relevance")
    x = inputs.detach()
    rows: list[LayerRelevance] = []
    with preserved(model):
        selector, explicit = selection(model, x, target)
        plan = spec.plan(model, x, selector, **opts)
        if not plan.backward.relevance:
            raise ValueError(f"{spec.name} with these options is not a relevance method (no layer-wise relevance)")
        backward = plan.backward.recording(lambda name, r_in, r_out, bias: rows.append(
            LayerRelevance(name, r_out.detach(), r_in.detach(), bias.detach())))
        run_backward(model, x, selector, backward, scale=not explicit)
    return rows
