"""Uncertainty of a per-layer score: bootstrap intervals over utterances, permutation p-values over labels.

A score is a function of frames ``x``, their labels and the utterance each frame came from. The
bootstrap resamples utterances with replacement (frames of one utterance are not independent);
the permutation test shuffles the labels across frames and counts how often the shuffled score
reaches the observed one: p = (1 + #{perm ≥ observed}) / (1 + permutations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Score = Callable[[np.ndarray, np.ndarray, np.ndarray], float]
"""score(x, labels, utterances) → float."""


def bootstrap_interval(score: Score, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, samples: int = 200,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``score`` over utterance-level bootstrap resamples."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    rows = {g: np.flatnonzero(groups == g) for g in ids}
    values = []
    for _ in range(samples):
        pick = rng.choice(ids, size=len(ids), replace=True)
        idx = np.concatenate([rows[g] for g in pick])
        # resampled utterances become distinct groups, so utterance-level splits stay disjoint
        new_groups = np.repeat(np.arange(len(pick)), [len(rows[g]) for g in pick])
        v = score(x[idx], labels[idx], new_groups)
        if v == v:
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def permutation_p(score: Score, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, permutations: int = 199,
                  seed: int = 0, observed: float | None = None) -> float:
    """One-sided p-value of the observed score against label permutations."""
    rng = np.random.default_rng(seed)
    obs = score(x, labels, groups) if observed is None else observed
    if obs != obs:
        return float("nan")
    reached = sum(score(x, rng.permutation(labels), groups) >= obs for _ in range(permutations))
    return float((1 + reached) / (1 + permutations))


def cka_bootstrap_interval(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, samples: int = 200,
                           level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """`bootstrap_interval` of the linear CKA of ``x`` with the one-hot ``labels``, the same resamples
    (the same generator draws), from per-utterance sums: each resample is a weighted sum of the
    utterances' Gram matrices, class sums and counts instead of a product over its frames."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    classes = np.unique(labels)
    x = np.asarray(x, dtype=np.float64)
    gram = np.stack([x[groups == g].T @ x[groups == g] for g in ids])  # (utterances, C, C)
    sums = np.stack([x[groups == g].sum(0) for g in ids])  # (utterances, C)
    class_sums = np.stack([[x[(groups == g) & (labels == c)].sum(0) for c in classes] for g in ids])
    class_counts = np.array([[np.sum((groups == g) & (labels == c)) for c in classes] for g in ids], dtype=np.float64)
    values = []
    for _ in range(samples):
        pick = rng.choice(ids, size=len(ids), replace=True)
        w = np.bincount(np.searchsorted(ids, pick), minlength=len(ids)).astype(np.float64)
        n_g = w @ class_counts
        total = n_g.sum()
        mean = (w @ sums) / total
        xx = np.linalg.norm(np.tensordot(w, gram, 1) - total * np.outer(mean, mean))
        centred = np.tensordot(w, class_sums, 1) - n_g[:, None] * mean[None]
        yy = np.sqrt(np.sum(n_g ** 2) - 2 * np.sum(n_g ** 3) / total + (np.sum(n_g ** 2) / total) ** 2)
        if xx > 0 and yy > 0:
            values.append(float(np.sum(centred ** 2) / (xx * yy)))
    if not values:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))
