"""Similarity of two attribution maps (2-D: Mel × time, or height × width), as in Adebayo et al.

- ``spearman_abs``: Spearman rank correlation of |map| (does the map point at the same places?)
- ``spearman``: the same on the signed maps (a sign flip gives −1 here and +1 above)
- ``ssim``: structural similarity (scikit-image) of |map| scaled to [0, 1] by its maximum
- ``hog``: Spearman rank correlation of the HOG descriptors (scikit-image) of those scaled maps

A constant map has no ranks: its correlation with anything is 0 (1 with an identical map).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity

METRICS = ("spearman_abs", "spearman", "ssim", "hog")


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.abs(np.asarray(m, dtype=np.float64))
    top = m.max()
    return m / top if top > 0 else m


def _hog(m: np.ndarray) -> np.ndarray:
    cell = max(2, min(8, min(m.shape) // 4))
    return hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(1, 1), feature_vector=True)


def similarity(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """All four similarities of two maps of the same 2-D shape."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"maps must be 2-D and of the same shape, got {a.shape} and {b.shape}")
    ua, ub = _unit(a), _unit(b)
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    ssim = 1.0 if np.array_equal(ua, ub) else float(structural_similarity(ua, ub, data_range=1.0, win_size=win))
    return {"spearman_abs": _rank_corr(np.abs(a), np.abs(b)), "spearman": _rank_corr(a, b), "ssim": ssim,
            "hog": _rank_corr(_hog(ua), _hog(ub))}


def summarize(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over examples, and the examples' values (their
    bootstrap intervals: `introspeech findings`)."""
    return {k: {"mean": float(np.mean([v[k] for v in values])), "std": float(np.std([v[k] for v in values])),
                "values": [float(v[k]) for v in values]} for k in METRICS}
