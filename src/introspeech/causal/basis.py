"""The units an ablation sweep ranks and removes: a layer's neurons (its channels), or the features
of a sparse autoencoder of that layer.

A feature ablation keeps the SAE's reconstruction error: the layer's output a becomes
a + scale · (z′ − z) W_dec, with z the frame's code and z′ the code with the chosen features set to
their mean, so only the features' part of the activation changes. The gradient with respect to a
code is the layer's gradient pulled back through the decoder: ∂L/∂z = scale · (∂L/∂a) W_decᵀ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..corpus.load import load_features
from ..models.description import ModelDescription
from ..profiles.capture import Capture
from ..profiles.collect import utterance_kinds
from ..profiles.settings import Layout, ProfileSettings
from .interventions import mean_ablations
from .sae import TopKSAE, frames_of


class Neurons:
    """The layer's channels."""

    name = "neurons"

    def width(self, channels: int) -> int:
        return channels

    def codes(self, a: torch.Tensor) -> torch.Tensor:
        return a

    def pull(self, g: torch.Tensor) -> torch.Tensor:
        return g

    def ablate(self, model: nn.Module, path: str, masks: torch.Tensor, mean: torch.Tensor, time_axis: int,
               frames: int | None = None, broadcast: bool = False):
        return mean_ablations(model, path, masks, mean, time_axis, frames, broadcast)


class Features:
    """The latents of one layer's `TopKSAE`."""

    name = "features"

    def __init__(self, sae: TopKSAE):
        self.sae = sae

    def width(self, channels: int) -> int:
        return int(self.sae.w_dec.shape[0])

    def codes(self, a: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.sae.encode(a.float()).to(a.dtype)

    def pull(self, g: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ((g.float() @ self.sae.w_dec.T) * self.sae.scale).to(g.dtype)

    @contextlib.contextmanager
    def ablate(self, model: nn.Module, path: str, masks: torch.Tensor, mean: torch.Tensor,
               time_axis: int, frames: int | None = None, broadcast: bool = False) -> Iterator[nn.Module]:
        sae = self.sae

        def fn(_m, _i, out):
            if broadcast and out.shape[0] == 1:  # the layers before ran once: one copy per mask from here
                out = out.expand(masks.shape[0], *out.shape[1:])
            a = out if time_axis == 1 else out.transpose(1, 2)  # (batch, time, channels)
            if a.shape[0] != masks.shape[0]:
                raise ValueError(f"feature ablations of {path!r}: {masks.shape[0]} masks for a batch of {a.shape[0]}")
            z = sae.encode(a.reshape(-1, a.shape[-1]).float()).reshape(*a.shape[:2], -1)
            where = masks[:, None, :]
            if frames is not None:  # only the first ``frames`` frames (the utterance, not the model's padding)
                where = where & (torch.arange(a.shape[1]) < frames)[None, :, None]
            new = torch.where(where, mean.float()[None, None, :], z)
            a = a + ((new - z) @ sae.w_dec * sae.scale).to(a.dtype)
            return a if time_axis == 1 else a.transpose(1, 2)
        handle = model.get_submodule(path).register_forward_hook(fn)
        try:
            yield model
        finally:
            handle.remove()


def feature_naps(desc: ModelDescription, layout: Layout, utts: list, saes: dict[str, TopKSAE],
                 kinds: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """NAPs of SAE features: per (layer, kind) the mean code per group ``(groups, features)`` (NaN
    where a group has no frame), frames labelled as `profiles` labels them; and each layer's mean
    code over all frames (the value a feature ablation sets)."""
    model, cfg = desc.module, desc.features
    s = ProfileSettings(groups=kinds)
    sums = {(n, k): np.zeros((len(layout.groups(k)), saes[n].w_dec.shape[0])) for n in saes for k in kinds}
    counts = {(n, k): np.zeros(len(layout.groups(k))) for n in saes for k in kinds}
    total = {n: np.zeros(saes[n].w_dec.shape[0]) for n in saes}
    frames = dict.fromkeys(saes, 0)
    with torch.no_grad(), Capture(model, layout) as cap:
        for u, f in load_features(utts, cfg, on_error=lambda u, e: None):
            x = torch.as_tensor(f, dtype=next(model.parameters()).dtype).unsqueeze(0)
            acts, out = cap(x)
            labelled = utterance_kinds(layout, s, u, out[0], cfg.frame_rate, f.shape[1] / cfg.frame_rate)
            for n, sae in saes.items():
                i = layout.layers.index(n)
                z = sae.encode(frames_of(acts[n]).float()).double().numpy()
                total[n] += z.sum(0)
                frames[n] += len(z)
                for k, lab in labelled.items():
                    labels = lab.label_at(layout.geometry[i], len(z))
                    ok = labels >= 0
                    np.add.at(sums[(n, k)], labels[ok], z[ok])
                    counts[(n, k)] += np.bincount(labels[ok], minlength=len(counts[(n, k)]))
    with np.errstate(invalid="ignore", divide="ignore"):
        naps = {key: sums[key] / counts[key][:, None] for key in sums}
    return naps, {n: total[n] / max(frames[n], 1) for n in saes}
