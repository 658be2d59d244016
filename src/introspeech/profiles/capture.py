"""Activation capture: forward hooks on a layout's layers (by module path), registered once for many
forward passes and always removed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .settings import Layout


class Capture:
    """Forward hooks on the layers of a `Layout` (by module path), registered once for many forward
    passes (a context manager: the hooks are removed on exit, also after an exception).

    ``acts`` holds each layer's output as ``(batch, channels, time)`` (a layer that gives
    ``(batch, time, channels)`` is seen transposed); ``raw`` the outputs as the model made them
    (what a gradient with respect to the layer is taken of)."""

    def __init__(self, model: nn.Module, layout: Layout):
        self.model, self.names, self.paths = model, layout.layers, layout.paths
        self.axes = dict(zip(layout.layers, layout.time_axes))
        self.acts: dict[str, torch.Tensor] = {}
        self.raw: dict[str, torch.Tensor] = {}
        self.handles: list = []

    def _keep(self, name: str, out: torch.Tensor) -> None:
        self.raw[name] = out
        self.acts[name] = out if self.axes[name] == -1 else out.transpose(1, 2)

    def __enter__(self) -> Capture:
        self.handles = [self.model.get_submodule(p).register_forward_hook(
            lambda _m, _i, o, n=n: self._keep(n, o)) for n, p in zip(self.names, self.paths)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __call__(self, x: torch.Tensor, keep_graph: bool = False, forward: Callable | None = None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The layers' outputs and the model's output for input ``x``; ``forward(x)`` runs the model
        another way (one that records it, say) and returns its output."""
        self.acts, self.raw = {}, {}
        with torch.set_grad_enabled(keep_graph):
            out = (forward or self.model)(x)
        return self.acts, out


def capture(model: nn.Module, layout: Layout, x: torch.Tensor,
            keep_graph: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs of the layout's layers for input ``x`` (hooks removed afterwards)."""
    with Capture(model, layout) as cap:
        return cap(x, keep_graph)
