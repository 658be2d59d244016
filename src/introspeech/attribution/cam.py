"""Class activation maps, as a template method (the pytorch-grad-cam idea): a CAM computes a
layer's activations A and the target's gradients dA, asks `weights` for one weight per channel,
and returns ReLU(Σ_k w_k A_k) upsampled to the input. Grad-CAM's weights are the mean gradient
over positions (time for 1-D layers, height×width for 2-D ones)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import preserved
from .targets import Target, output_gradient


def find_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """A sub-module by module path (``layers.layer9``) or a unique path suffix (``layer9``)."""
    if isinstance(layer, nn.Module):
        return layer
    named = dict(model.named_modules())
    if layer in named:
        return named[layer]
    hits = [n for n in named if n.endswith("." + layer)]
    if len(hits) == 1:
        return named[hits[0]]
    raise ValueError(f"layer {layer!r} not found in the model" + (f" (ambiguous: {hits})" if hits else
                     f"; some layers: {[n for n in named if n][:12]}"))


def layer_gradient(model: nn.Module, x: torch.Tensor, target: Target, layer: str | nn.Module,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations of ``layer``, the target's gradient with respect to them, and the model output."""
    module = find_layer(model, layer)
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        out = model(x.detach())
    finally:
        handle.remove()
    if "a" not in store:
        raise ValueError(f"layer {layer!r} did not run in the forward pass")
    (grad,) = torch.autograd.grad(out, store["a"], output_gradient(out, target))
    return store["a"].detach(), grad, out.detach()


def upsample(cam: torch.Tensor, like: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """Resize a ``(B, *positions)`` map to the input's positions and broadcast over its channels."""
    size = like.shape[2:]
    if cam.dim() - 1 != len(size):
        raise ValueError(f"a {cam.dim() - 1}-D layer map cannot be upsampled to an input with {len(size)} "
                         "position dimensions")
    if mode in ("linear", "bilinear"):
        mode = "linear" if len(size) == 1 else "bilinear"
        up = F.interpolate(cam.unsqueeze(1), size=size, mode=mode, align_corners=False)
    else:
        up = F.interpolate(cam.unsqueeze(1), size=size, mode=mode)
    return up.expand_as(like)


class CAM:
    """Template: subclasses define `weights`."""

    def __init__(self, model: nn.Module, layer: str | nn.Module, relu: bool = True, mode: str = "linear"):
        self.model, self.layer, self.relu, self.mode = model, layer, relu, mode

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def layer_map(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The map at the layer's resolution, ``(B, *positions)``."""
        with preserved(self.model):
            a, g, _ = layer_gradient(self.model, x, target, self.layer)
        w = self.weights(a, g)
        cam = (w.reshape(*w.shape, *([1] * (a.dim() - 2))) * a).sum(1)
        return F.relu(cam) if self.relu else cam

    def __call__(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        return upsample(self.layer_map(x, target), x, self.mode)


class GradCAM(CAM):
    """α_k = mean over positions of ∂y/∂A_k (Selvaraju et al.)."""

    def weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return gradients.flatten(2).mean(-1)
