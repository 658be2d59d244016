"""Class-conditional activation profiles of image classifiers (or any per-example model): for each
layer, the mean of every channel over positions, averaged per class; scored by η² (the share of
the per-example channel means' variance that the class explains) and clustered like NAPs.

The speech NAPs profile frames; an image has no frames, so each example contributes one vector per
layer (its channels averaged over height × width), the same statistic a global-average-pooling
head reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.description import ModelDescription
from .cluster import cluster_quality
from .results import contrastive, eta_squared


@dataclass
class ClassProfiles:
    """Per layer: ``sum`` (class, channel) of per-example channel means, ``count`` (class),
    ``sumsq`` (channel); the class names."""

    classes: tuple[str, ...]
    arrays: dict[str, dict[str, np.ndarray]]

    def profiles(self, layer: str) -> np.ndarray:
        a = self.arrays[layer]
        with np.errstate(invalid="ignore", divide="ignore"):
            return a["sum"] / a["count"][:, None]

    def scores(self, metric: str = "cosine") -> dict[str, dict[str, float]]:
        out = {}
        for layer, a in self.arrays.items():
            keep = np.flatnonzero(a["count"] > 0)
            q = cluster_quality(contrastive(self.profiles(layer)[keep], a["count"][keep]),
                                [self.classes[i] for i in keep], "classes", metric)
            out[layer] = {"classes_eta2": eta_squared(a["sum"], a["count"], a["sumsq"]),
                          **{f"classes_{k}": v for k, v in q.items()}}
        return out


def class_profiles(desc: ModelDescription, inputs: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> ClassProfiles:
    """Accumulate over ``inputs`` (N, ...) with class ``labels`` (N,), in batches (memory bounded)."""
    model = desc.module
    n_classes = len(desc.output.alphabet)
    arrays = {layer.name: {"sum": np.zeros((n_classes, layer.channels)), "count": np.zeros(n_classes),
                           "sumsq": np.zeros(layer.channels)} for layer in desc.layers}
    acts: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(layer.path).register_forward_hook(
        lambda _m, _i, o, n=layer.name: acts.__setitem__(n, o)) for layer in desc.layers]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for k in range(0, len(labels), batch):
                model(inputs[k:k + batch])
                y = labels[k:k + batch].numpy()
                for name, a in acts.items():
                    means = a.flatten(2).mean(-1).double().numpy() if a.dim() > 2 else a.double().numpy()
                    np.add.at(arrays[name]["sum"], y, means)
                    arrays[name]["count"] += np.bincount(y, minlength=n_classes)
                    arrays[name]["sumsq"] += (means ** 2).sum(0)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return ClassProfiles(desc.output.alphabet, arrays)
