"""Activation capture: forward hooks on a layout's layers (by module path), registered once for many
forward passes and always removed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .settings import Layout


class Capture:
    """Forward hooks on the layers of a `Layout` (by module path), registered once for many forward
    passes (a context manager: the hooks are removed on exit, also after an exception)."""

    def __init__(self, model: nn.Module, layout: Layout):
        self.model, self.names, self.paths = model, layout.layers, layout.paths
        self.acts: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def __enter__(self) -> Capture:
        self.handles = [self.model.get_submodule(p).register_forward_hook(
            lambda _m, _i, o, n=n: self.acts.__setitem__(n, o)) for n, p in zip(self.names, self.paths)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __call__(self, x: torch.Tensor, keep_graph: bool = False, forward: Callable | None = None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The layers' outputs and the model's output for input ``x``; ``forward(x)`` runs the model
        another way (one that records it, say) and returns its output."""
        self.acts = {}
        with torch.set_grad_enabled(keep_graph):
            out = (forward or self.model)(x)
        return self.acts, out


def capture(model: nn.Module, layout: Layout, x: torch.Tensor,
            keep_graph: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs of the layout's layers for input ``x`` (hooks removed afterwards)."""
    with Capture(model, layout) as cap:
        return cap(x, keep_graph)
