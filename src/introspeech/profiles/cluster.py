"""Clustering group NAPs (scipy) and scoring the clusters against phonetic categories (scikit-learn).

Distances are cosine (default) or Euclidean between contrastive NAPs; the tree is average linkage
with optimal leaf ordering. Phonemes are scored against their manner of articulation (text.CATEGORY;
silence left out): the silhouette of the category labels under the NAP distances, and the adjusted
Rand index of the tree cut into as many clusters as there are categories.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import adjusted_rand_score, silhouette_score

from ..text import CATEGORY

METRICS = ("cosine", "euclidean")


def distances(naps: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Condensed pairwise distances between rows (groups) of ``(group, features…)``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    x = np.asarray(naps, dtype=np.float64).reshape(naps.shape[0], -1)
    d = pdist(x, metric)
    return np.nan_to_num(d, nan=1.0 if metric == "cosine" else 0.0)  # all-zero rows: cosine undefined


def tree(naps: np.ndarray, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage tree with optimal leaf ordering, and the leaf order."""
    from scipy.cluster.hierarchy import leaves_list

    if naps.shape[0] < 2:
        return np.zeros((0, 4)), np.arange(naps.shape[0])
    z = linkage(distances(naps, metric), method="average", optimal_ordering=True)
    return z, leaves_list(z)


def cluster_quality(naps: np.ndarray, names: list[str], kind: str, metric: str = "cosine") -> dict[str, float]:
    """``mean_distance`` between groups; for phonemes also ``silhouette`` and ``ari`` against the
    manner categories."""
    out: dict[str, float] = {"mean_distance": float(distances(naps, metric).mean()) if len(names) > 1 else float("nan")}
    if kind != "phonemes":
        return out
    keep = [i for i, n in enumerate(names) if n in CATEGORY]
    labels = [CATEGORY[names[i]] for i in keep]
    n_cat = len(set(labels))
    if len(keep) < 3 or n_cat < 2 or n_cat >= len(keep):
        return {**out, "silhouette": float("nan"), "ari": float("nan")}
    sub = naps[keep]
    d = squareform(distances(sub, metric))
    out["silhouette"] = float(silhouette_score(d, labels, metric="precomputed"))
    z, _ = tree(sub, metric)
    out["ari"] = float(adjusted_rand_score(labels, fcluster(z, n_cat, criterion="maxclust")))
    return out


def mean_pairwise_cosine(rows: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of rows."""
    x = np.asarray(rows, dtype=np.float64)
    if x.shape[0] < 2:
        return float("nan")
    return float(np.mean(1.0 - distances(x, "cosine")))
