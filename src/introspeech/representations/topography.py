"""Topographic activation maps: a layer's channels laid out in 2-D by the similarity of their NAPs.

Each channel's profile is its column of the contrastive NAPs (one value per phoneme). Channels
are placed by metric multidimensional scaling (scikit-learn's SMACOF, seeded) of the correlation
distance 1 − r between profiles, so channels that respond to the same phonemes sit together; a
phoneme's map is its contrastive NAP over that layout, smoothed by a Gaussian kernel on a grid.
The layout is scored by how much more a channel's profile correlates with its k nearest neighbours
in the layout than with random channels (0: no better than chance), with a permutation p-value.
MDS was chosen over UMAP (a dependency more) and self-organizing maps (not in a kept library).
"""

from __future__ import annotations

import warnings

import numpy as np


def profile_correlation(profiles: np.ndarray) -> np.ndarray:
    """Correlation between channel profiles: ``profiles`` ``(groups, channels)`` → ``(channels, channels)``."""
    p = np.asarray(profiles, dtype=np.float64)
    p = p - p.mean(0)
    norm = np.linalg.norm(p, axis=0)
    p = p / np.where(norm > 0, norm, 1)
    return p.T @ p


def layout(profiles: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D coordinates ``(channels, 2)`` of the channels, by MDS of the correlation distance."""
    from sklearn.manifold import MDS

    d = np.clip(1.0 - profile_correlation(profiles), 0, 2)
    np.fill_diagonal(d, 0)
    with warnings.catch_warnings():  # scikit-learn renames `dissimilarity` to `metric` in 1.10
        warnings.simplefilter("ignore", FutureWarning)
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=1, max_iter=300,
                  normalized_stress="auto", init="random")
        return mds.fit_transform(d)


def neighbour_score(profiles: np.ndarray, coords: np.ndarray, k: int = 5) -> float:
    """Mean profile correlation of each channel with its ``k`` nearest channels in the layout, minus
    the mean correlation over all other channels."""
    r = profile_correlation(profiles)
    n = len(coords)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    off = ~np.eye(n, dtype=bool)
    return float(np.mean(r[np.arange(n)[:, None], near]) - np.mean(r[off]))


def neighbour_p(profiles: np.ndarray, coords: np.ndarray, k: int = 5, permutations: int = 199, seed: int = 0) -> float:
    """Permutation p-value of `neighbour_score`: channels shuffled over the layout's positions.

    The profile correlations and each position's k nearest positions are computed once; a
    permutation only reindexes them (channel i at position π(i) has the channels at the
    positions near π(i) as neighbours), equal to rescoring the permuted layout."""
    rng = np.random.default_rng(seed)
    obs = neighbour_score(profiles, coords, k)
    r = profile_correlation(profiles)
    n = len(coords)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]  # positions near each position
    base = np.mean(r[~np.eye(n, dtype=bool)])
    reached = 0
    for _ in range(permutations):
        perm = rng.permutation(n)  # the permuted layout puts channel i at coords[perm[i]]
        at = np.empty(n, dtype=np.int64)
        at[perm] = np.arange(n)  # channel at each position
        reached += float(np.mean(r[np.arange(n)[:, None], at[near[perm]]]) - base) >= obs
    return float((1 + reached) / (1 + permutations))


def smooth_map(coords: np.ndarray, values: np.ndarray, size: int = 32, bandwidth: float = 0.08) -> np.ndarray:
    """``values`` of the channels over the layout as a ``size × size`` image (Nadaraya–Watson
    smoothing, bandwidth as a share of the layout's extent)."""
    lo, hi = coords.min(0), coords.max(0)
    span = np.maximum(hi - lo, 1e-12)
    unit = (coords - lo) / span
    g = (np.arange(size) + 0.5) / size
    gx, gy = np.meshgrid(g, g)
    d2 = (gx[..., None] - unit[:, 0]) ** 2 + (gy[..., None] - unit[:, 1]) ** 2
    w = np.exp(-d2 / (2 * bandwidth ** 2))
    return (w * values).sum(-1) / np.maximum(w.sum(-1), 1e-12)
