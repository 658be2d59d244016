"""Uncertainty of a per-layer score: bootstrap intervals over utterances, permutation p-values over labels.

A score is a function of frames ``x``, their labels and the utterance each frame came from. The
bootstrap resamples utterances with replacement (frames of one utterance are not independent);
the permutation test shuffles the labels across frames and counts how often the shuffled score
reaches the observed one: p = (1 + #{perm ≥ observed}) / (1 + permutations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

from .measures import label_gram_norm

Score = Callable[[np.ndarray, np.ndarray, np.ndarray], float]
"""score(x, labels, utterances) → float."""


def interval(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values (NaNs left out)."""
    return _interval(list(values), level)


def shifted_interval(values, estimate: float, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap ``values`` moved by their bias (the estimate minus the
    resamples' mean). Scores of class means (η², silhouettes, RMS of patterns) are biased in
    resamples: a resample repeats utterances, so its class means are noisier than the corpus'; the
    plain percentile interval then need not contain the estimate itself."""
    v = np.asarray([x for x in values if x == x], np.float64)
    if not v.size or estimate != estimate:
        return float("nan"), float("nan")
    lo, hi = _interval(list(v), level)
    shift = estimate - float(v.mean())
    return lo + shift, hi + shift


def bootstrap_weights(ids: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """``(samples, utterances)`` multiplicities of utterance-level resamples of the sorted ``ids``:
    the draws `bootstrap_interval` makes, as counts, so any sum over utterances is resampled by one
    product."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(np.searchsorted(ids, rng.choice(ids, size=len(ids), replace=True)),
                                 minlength=len(ids)) for _ in range(samples)]).astype(np.float64)


def _interval(values: list[float], level: float) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


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
        values.append(score(x[idx], labels[idx], new_groups))
    return _interval(values, level)


def permutation_p(score: Score, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, permutations: int = 199,
                  seed: int = 0, observed: float | None = None) -> float:
    """One-sided p-value of the observed score against label permutations."""
    rng = np.random.default_rng(seed)
    obs = score(x, labels, groups) if observed is None else observed
    if obs != obs:
        return float("nan")
    reached = sum(score(x, rng.permutation(labels), groups) >= obs for _ in range(permutations))
    return float((1 + reached) / (1 + permutations))


def permuted_class_sums(x: np.ndarray, labels: np.ndarray, permutations: int, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class sums of ``x`` under the label permutations that `permutation_p` draws (the same
    generator calls), all from one sparse product: ``(permutations, classes, channels)``, the class
    counts (a permutation keeps them) and the classes."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    k, n = len(classes), len(labels)
    rows = np.concatenate([p * k + np.searchsorted(classes, rng.permutation(labels)) for p in range(permutations)]
                          ) if permutations else np.zeros(0, np.int64)
    cols = np.tile(np.arange(n), permutations)
    indicator = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(permutations * k, n))
    sums = np.asarray(indicator @ np.asarray(x, dtype=np.float64)).reshape(permutations, k, -1)
    return sums, counts.astype(np.float64), classes


def p_value(values: np.ndarray, observed: float) -> float:
    """(1 + #{value ≥ observed}) / (1 + #values), NaN for a NaN observation."""
    if observed != observed:
        return float("nan")
    return float((1 + int(np.sum(np.asarray(values) >= observed))) / (1 + len(values)))


class UtteranceSums:
    """Per-utterance sufficient statistics of one layer's frames: Gram matrices, sums, and sums and
    counts per class. A bootstrap resample of utterances is a weighted sum of these, so CKA and
    NAP scores of every resample come from a few GEMMs instead of a pass over its frames."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, groups: np.ndarray, gram: bool = True) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.ids, g = np.unique(groups, return_inverse=True)
        self.classes, c = np.unique(labels, return_inverse=True)
        u, k, n = len(self.ids), len(self.classes), len(x)
        pair = sparse.csr_matrix((np.ones(n), (g * k + c, np.arange(n))), shape=(u * k, n))
        self.class_sums = (pair @ x).reshape(u, k, x.shape[1])  # (utterances, classes, channels)
        self.class_counts = np.asarray(pair.sum(1)).reshape(u, k)
        self.sums = self.class_sums.sum(1)
        if gram:  # frames sorted by utterance, one product per utterance's slice
            order = np.argsort(g, kind="stable")
            xs = x[order]
            edges = np.concatenate([[0], np.cumsum(np.bincount(g, minlength=u))])
            self.gram = np.stack([xs[a:b].T @ xs[a:b] for a, b in zip(edges[:-1], edges[1:])]).reshape(u, -1)

    def weights(self, samples: int, seed: int) -> np.ndarray:
        """``(samples, utterances)`` multiplicities of the resamples that `bootstrap_interval` draws."""
        return bootstrap_weights(self.ids, samples, seed)


def cka_bootstrap_interval(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, samples: int = 200,
                           level: float = 0.95, seed: int = 0, sums: UtteranceSums | None = None) -> tuple[float, float]:
    """`bootstrap_interval` of the linear CKA of ``x`` with the one-hot ``labels``, the same resamples
    (the same generator draws), from `UtteranceSums`: all resamples' ‖X̃ᵀX̃‖ from one GEMM of the
    multiplicities with the utterances' Gram matrices, and their centred class sums from another."""
    return _interval(list(cka_bootstrap_values(x, labels, groups, samples, seed, sums)), level)


def cka_bootstrap_values(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, samples: int = 200, seed: int = 0,
                         sums: UtteranceSums | None = None) -> np.ndarray:
    """The resampled values behind `cka_bootstrap_interval` (resamples without a defined CKA left out)."""
    s = sums if sums is not None else UtteranceSums(x, labels, groups)
    w = s.weights(samples, seed)
    n_g = w @ s.class_counts  # (samples, classes)
    total = n_g.sum(1)
    mean = (w @ s.sums) / total[:, None]  # (samples, channels)
    c = mean.shape[1]
    gram = (w @ s.gram).reshape(samples, c, c) - total[:, None, None] * mean[:, :, None] * mean[:, None, :]
    xx = np.linalg.norm(gram.reshape(samples, -1), axis=1)
    centred = (w @ s.class_sums.reshape(len(s.ids), -1)).reshape(samples, -1, c) - n_g[:, :, None] * mean[:, None, :]
    yy = label_gram_norm(n_g)
    ok = (xx > 0) & (yy > 0)
    return np.sum(centred ** 2, axis=(1, 2))[ok] / (xx[ok] * yy[ok])


def nap_bootstrap_interval(naps_score: Callable[[np.ndarray, np.ndarray, np.ndarray], float], x: np.ndarray,
                           labels: np.ndarray, groups: np.ndarray, samples: int = 200, level: float = 0.95,
                           seed: int = 0, sums: UtteranceSums | None = None) -> tuple[float, float]:
    """`bootstrap_interval` of a score of the per-class means (NAPs), the same resamples, from
    `UtteranceSums`. ``naps_score(class_sums, class_counts, classes)`` scores one resample."""
    return _interval(list(nap_bootstrap_values(naps_score, x, labels, groups, samples, seed, sums)), level)


def nap_bootstrap_values(naps_score: Callable[[np.ndarray, np.ndarray, np.ndarray], float], x: np.ndarray,
                         labels: np.ndarray, groups: np.ndarray, samples: int = 200, seed: int = 0,
                         sums: UtteranceSums | None = None) -> np.ndarray:
    """The resampled values behind `nap_bootstrap_interval` (one per resample, NaN kept)."""
    s = sums if sums is not None else UtteranceSums(x, labels, groups, gram=False)
    w = s.weights(samples, seed)
    counts = w @ s.class_counts
    class_sums = (w @ s.class_sums.reshape(len(s.ids), -1)).reshape(samples, len(s.classes), -1)
    return np.array([naps_score(class_sums[k], counts[k], s.classes) for k in range(samples)])


def mean_interval(values: list[float], owners: list[int], bootstrap: int, seed: int) -> dict:
    """Mean of per-unit values (NaN left out) with the percentile interval of bootstrap resamples of
    their owners (utterances): every resample's mean from the owners' sums and counts (a mean is
    not biased by resampling, so its interval is not moved, and a share's stays within [0, 1])."""
    v, o = np.asarray(values, np.float64), np.asarray(owners)
    ok = ~np.isnan(v)
    v, o = v[ok], o[ok]
    if not v.size:
        return {"value": float("nan"), "ci": [float("nan")] * 2}
    ids, idx = np.unique(o, return_inverse=True)
    sums, counts = np.bincount(idx, v, len(ids)), np.bincount(idx, minlength=len(ids)).astype(np.float64)
    w = bootstrap_weights(ids, bootstrap, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (w @ sums) / (w @ counts)
    return {"value": float(v.mean()), "ci": list(_interval(list(boot), 0.95))}
