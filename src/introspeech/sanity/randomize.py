"""Model-parameter randomization (Adebayo et al. 2018), always on a copy of the model.

Re-initialization scheme: every module of a randomized layer that has ``reset_parameters`` is
reset with PyTorch's own initializer for that module type (Conv/Linear: Kaiming-uniform weights,
uniform biases), drawn from a generator seeded by (seed, layer name), so results are reproducible
and a layer gets the same random weights in the cascading and the independent test. BatchNorm
layers inside a randomized layer are reset explicitly: γ = 1, β = 0 and running statistics
mean 0, variance 1 (what ``reset_parameters`` does; Quantus' MPRT resets them the same way), so a
randomized block no longer normalizes with the statistics of the trained network.

Layers: for the Wav2Letter recognizer, its named blocks (``layer1`` … ``output``; a block's
Conv1d and BatchNorm1d go together); for any other model, its leaf modules that own parameters.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator

import torch
from torch import nn


def randomizable_layers(model: nn.Module) -> list[str]:
    """Layer names in forward (registration) order."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "layer_names") and hasattr(model, "layers"):
        return [f"layers.{n}" for n in config.layer_names]
    return [name for name, m in model.named_modules()
            if name and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]


def _seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


@torch.no_grad()
def reinitialize(model: nn.Module, name: str, seed: int = 0) -> None:
    """Re-initialize layer ``name`` of ``model`` in place (see the module docstring)."""
    layer = model.get_submodule(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(seed, name))
        found = False
        for m in layer.modules():
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False)):
                m.reset_parameters()
                found = True
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                found = True
    if not found:
        raise ValueError(f"layer {name!r} has no parameters to randomize")


def cascading(model: nn.Module, layers: list[str] | None = None, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Copies of the model with the top 1, 2, … layers re-initialized (from the output downwards,
    cumulatively); yields (name of the last randomized layer, copy)."""
    layers = layers or randomizable_layers(model)
    net = copy.deepcopy(model)
    for name in reversed(layers):
        reinitialize(net, name, seed)
        yield name, copy.deepcopy(net)


def fully_randomized(model: nn.Module, layers: list[str] | None = None, seed: int = 0) -> nn.Module:
    """The last copy `cascading` yields (every layer re-initialized, in the same order), without the
    copies of the steps between."""
    net = copy.deepcopy(model)
    for name in reversed(layers or randomizable_layers(model)):
        reinitialize(net, name, seed)
    return net


def independent(model: nn.Module, layers: list[str] | None = None, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Copies of the model with one layer re-initialized, the others trained; yields (layer, copy)."""
    for name in reversed(layers or randomizable_layers(model)):
        net = copy.deepcopy(model)
        reinitialize(net, name, seed)
        yield name, net
