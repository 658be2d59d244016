"""Faithfulness: does removing what a map marks as relevant change the prediction most?

For one emitted letter (class ``c`` at output frame ``t``) and its map, the input is cut into
time–frequency patches, ranked by the map's sum over each patch (most positive evidence first):

- **deletion**: the top k/steps of the patches replaced, for k = 0 … steps; the letter's
  probability at its frame after each step; the area under that curve (lower: more faithful);
- **insertion**: starting from the fully replaced input, the top patches put back (higher: more
  faithful);
- **random**: deletion in a seeded random order, the chance level the ranking must beat;
- **ROAD** (Rong et al. 2022): deletion where removed values are not a constant but a noisy
  linear imputation from their neighbours, so the perturbed input stays closer to the data and a
  drop in probability says more about the evidence than about the artefact of a flat patch.

Replacement values (``baseline``): ``mean`` (0: the corpus mean of z-normalized features),
``noise`` (seeded standard normal), ``blur`` (the input smoothed by a Gaussian, σ = 2 bands × 4
frames). A letter's score depends only on its receptive field, so every curve is computed on
that window of the input (cut at a multiple of the stride, so its frames are the whole run's,
and checked against the whole run's score), all steps of all curves of a letter in one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy import sparse
from scipy.ndimage import gaussian_filter
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve
from torch import nn

from ..graph import FrameGeometry

BASELINES = ("mean", "noise", "blur")


@dataclass(frozen=True)
class Curves:
    """One letter's curves over fractions 0, 1/steps, …, 1 of the patches (probabilities)."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    random: np.ndarray
    road: np.ndarray

    def auc(self, name: str) -> float:
        """Area under a curve (trapezoids over the fractions)."""
        y = getattr(self, name)
        return float(np.sum((y[1:] + y[:-1]) * np.diff(self.fractions)) / 2)


def crop(x: torch.Tensor, geo: FrameGeometry | None, frame: int) -> tuple[int, int, int]:
    """The input window ``[a, b)`` that holds output frame ``frame``'s receptive field, starting at a
    multiple of the stride (so crop frame ``frame − a / stride`` is the whole run's), and that index;
    ``geo`` None (a model without locality: attention, global gates): the whole input."""
    if geo is None:
        return 0, x.shape[-1], frame
    lo, hi = geo.window(frame, x.shape[-1])
    a = lo // geo.stride * geo.stride
    return a, hi, frame - a // geo.stride


def patch_grid(n_mels: int, n_frames: int, patch: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Non-overlapping patches (the last ones cut at the edges), band-major."""
    pm, pt = patch
    return [(slice(m, min(m + pm, n_mels)), slice(t, min(t + pt, n_frames)))
            for m in range(0, n_mels, pm) for t in range(0, n_frames, pt)]


@lru_cache(maxsize=8)
def _neighbour_weights(h: int, w: int) -> sparse.csr_matrix:
    """Row-normalized 8-neighbour weights of an ``h × w`` grid (direct 1/6, diagonal 1/12)."""
    idx = np.arange(h * w).reshape(h, w)
    rows, cols, vals = [], [], []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if not (di or dj):
                continue
            a = idx[max(0, -di):h - max(0, di), max(0, -dj):w - max(0, dj)]
            b = idx[max(0, di):h - max(0, -di), max(0, dj):w - max(0, -dj)]
            rows.append(a.ravel())
            cols.append(b.ravel())
            vals.append(np.full(a.size, 1 / 6 if di == 0 or dj == 0 else 1 / 12))
    m = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))
    return sparse.diags(1 / np.asarray(m.sum(1)).ravel()) @ m


def impute(x: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """ROAD's noisy linear imputation: each removed value is the weighted mean of its 8 neighbours
    (direct 1/6, diagonal 1/12, renormalized at the edges), solved jointly, plus Gaussian noise. A
    removed region with no kept neighbour (everything removed, or a region walled off) leaves those
    equations undetermined: it takes the kept values' mean (0, the mean baseline, if none is kept)."""
    out = x.copy()
    r = removed.ravel()
    if not r.any():
        return out
    weights = _neighbour_weights(*x.shape)
    inner, rhs = weights[r][:, r], weights[r][:, ~r] @ x.ravel()[~r]
    lhs = sparse.identity(int(r.sum()), format="csr") - inner
    free = _without_boundary(inner, weights[r][:, ~r])
    if free.any():  # a removed region that touches nothing kept: the equations hold for any constant
        keep = sparse.diags((~free).astype(float))
        lhs = keep @ lhs + sparse.diags(free.astype(float))
        rhs = np.where(free, x.ravel()[~r].mean() if (~r).any() else 0.0, rhs)
    solved = spsolve(lhs.tocsc(), rhs)
    out.ravel()[np.flatnonzero(r)] = np.atleast_1d(solved) + rng.normal(0, noise, int(r.sum()))
    return out


def _without_boundary(inner: sparse.csr_matrix, to_kept: sparse.csr_matrix) -> np.ndarray:
    """Removed values whose connected region (8-neighbours) has no kept neighbour."""
    n, label = connected_components(inner, directed=False)
    touches = np.zeros(n, dtype=bool)
    touches[label[np.asarray(to_kept.sum(1)).ravel() > 0]] = True
    return ~touches[label]


def replacement(x: np.ndarray, baseline: str, rng: np.random.Generator) -> np.ndarray:
    if baseline == "mean":
        return np.zeros_like(x)
    if baseline == "noise":
        return rng.standard_normal(x.shape).astype(x.dtype)
    if baseline == "blur":
        return gaussian_filter(x, sigma=(2, 4), mode="nearest")
    raise ValueError(f"baseline must be one of {BASELINES}, not {baseline!r}")


def perturbation_curves(window: np.ndarray, rel: np.ndarray, probability, steps: int = 10,
                        patch: tuple[int, int] = (8, 4), baseline: str = "mean", seed: int = 0,
                        road_noise: float = 0.1) -> Curves:
    """The four curves of a 2-D input ``window`` and its map ``rel`` (same shape); ``probability``
    maps a batch of perturbed windows ``(n, *window.shape)`` to the explained class's probability."""
    rng = np.random.default_rng(seed)
    fill = replacement(window, baseline, rng)
    patches = patch_grid(*window.shape, patch)
    ranked = np.argsort(-np.array([rel[p].sum() for p in patches]), kind="stable")
    shuffled = rng.permutation(len(patches))
    counts = [math.ceil(k * len(patches) / steps) for k in range(steps + 1)]

    def mask_of(order, n):
        m = np.zeros(window.shape, dtype=bool)
        for k in order[:n]:
            m[patches[k]] = True
        return m

    inputs = []
    for n in counts:  # deletion, insertion, random, ROAD at each step
        top = mask_of(ranked, n)
        inputs += [np.where(top, fill, window), np.where(top, window, fill),
                   np.where(mask_of(shuffled, n), fill, window), impute(window, top, road_noise, rng)]
    prob = np.asarray(probability(np.stack(inputs))).reshape(steps + 1, 4)
    return Curves(np.array(counts) / len(patches), prob[:, 0], prob[:, 1], prob[:, 2], prob[:, 3])


def letter_curves(model: nn.Module, x: torch.Tensor, geo: FrameGeometry | None, cls: int, frame: int, relevance: torch.Tensor,
                  steps: int = 10, patch: tuple[int, int] = (8, 4), baseline: str = "mean", seed: int = 0,
                  road_noise: float = 0.1, scores: torch.Tensor | None = None) -> Curves:
    """The four curves of one letter (class ``cls`` at output ``frame``) and its map ``relevance``
    ``(n_mels, time)`` of input ``x`` ``(1, n_mels, time)``, on the letter's receptive-field window
    (``geo`` None: the whole input, for models without locality); ``scores``: the whole input's
    output ``(classes, frames)`` if already computed."""
    a, b, t = crop(x, geo, frame)
    window = x[0, :, a:b].detach().cpu().numpy().astype(np.float64)
    rel = relevance[..., a:b].detach().cpu().double().numpy().reshape(window.shape)
    p = next(model.parameters())
    with torch.no_grad():
        whole = model(x[..., a:b])[0, :, t].double()
        full = (model(x)[0] if scores is None else scores)[:, frame].double()
    if not torch.allclose(whole, full, rtol=1e-4, atol=1e-4 * float(full.abs().max())):
        raise ValueError(f"the score of frame {frame} differs on its receptive-field window: the model is "
                         "not shift-equivariant along time, so its curves cannot be cut to the window")

    def probability(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.as_tensor(batch, dtype=p.dtype, device=p.device))
        return torch.softmax(out[:, :, t].double(), dim=1)[:, cls].cpu().numpy()
    return perturbation_curves(window, rel, probability, steps, patch, baseline, seed, road_noise)


def image_curves(model: nn.Module, x: torch.Tensor, cls: int, relevance: torch.Tensor, steps: int = 10,
                 patch: tuple[int, int] = (2, 2), baseline: str = "mean", seed: int = 0,
                 road_noise: float = 0.1) -> Curves:
    """The four curves of an image classifier's class ``cls`` for one image ``x`` ``(1, 1, H, W)``."""
    window = x[0, 0].detach().cpu().numpy().astype(np.float64)
    rel = relevance.detach().cpu().double().numpy().reshape(window.shape)
    p = next(model.parameters())

    def probability(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.as_tensor(batch[:, None], dtype=p.dtype, device=p.device))
        return torch.softmax(out.double(), dim=1)[:, cls].cpu().numpy()
    return perturbation_curves(window, rel, probability, steps, patch, baseline, seed, road_noise)
