"""Layer-wise measures of sampled frames: linear probes with a control task, and CKA.

- **Probes** (Belinkov & Glass 2017): a multinomial logistic regression (scikit-learn, standardized
  features) predicts a frame's phone (or letter) from one layer's activations; train and test
  frames come from disjoint utterances. **Control task** (Hewitt & Liang 2019): every label type
  is mapped once to a random class drawn from the label distribution, so a probe that memorizes
  types scores as well on it; *selectivity* = accuracy − control accuracy.
- **CKA** (Kornblith et al. 2019): linear centred kernel alignment
  ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` of column-centred frames; ``rbf_cka`` with a Gaussian kernel at
  a bandwidth of ``sigma`` × the median distance. A layer against the one-hot labels says how
  linearly the layer carries them.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two views ``(n, p)`` and ``(n, q)`` of the same n frames."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x, 0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, 0)
    xy = np.linalg.norm(y.T @ x) ** 2
    xx, yy = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    return float(xy / (xx * yy)) if xx > 0 and yy > 0 else float("nan")


def cka_matrix(views: list[np.ndarray]) -> list[list[float]]:
    """`linear_cka` between every pair of views of the same frames: each view centred and its
    ‖XᵀX‖ taken once, each pair's product once (the matrix is symmetric, its diagonal 1)."""
    centred = [np.asarray(v, dtype=np.float64) - np.mean(v, 0) for v in views]
    norms = [np.linalg.norm(c.T @ c) for c in centred]
    n = len(views)
    out = [[float("nan")] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            if norms[i] > 0 and norms[j] > 0:
                out[i][j] = out[j][i] = 1.0 if i == j else float(np.linalg.norm(centred[j].T @ centred[i]) ** 2
                                                                  / (norms[i] * norms[j]))
    return out


def class_sums(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of the rows of ``x`` per label value (one sparse product), their counts and the values."""
    classes, idx = np.unique(labels, return_inverse=True)
    indicator = sparse.csr_matrix((np.ones(len(idx)), (idx, np.arange(len(idx)))), shape=(len(classes), len(idx)))
    return indicator @ np.asarray(x, dtype=np.float64), np.bincount(idx).astype(np.float64), classes


def label_gram_norm(counts: np.ndarray) -> np.ndarray:
    """‖ỸᵀỸ‖_F of centred one-hot labels from their class counts (along the last axis)."""
    n = np.asarray(counts, dtype=np.float64)
    total = n.sum(-1)
    return np.sqrt(np.sum(n ** 2, -1) - 2 * np.sum(n ** 3, -1) / total + (np.sum(n ** 2, -1) / total) ** 2)


def label_cka(x: np.ndarray, labels: np.ndarray) -> float:
    """`linear_cka` of ``x`` with the one-hot ``labels``, from class sums (no one-hot matrix):
    ‖ỸᵀX̃‖ are the centred class sums, ‖ỸᵀỸ‖ follows from the class counts."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, 0)
    sums, counts, _ = class_sums(xc, labels)
    yy = label_gram_norm(counts)
    xx = np.linalg.norm(xc.T @ xc)
    return float(np.sum(sums ** 2) / (xx * yy)) if xx > 0 and yy > 0 else float("nan")


def rbf_cka(x: np.ndarray, y: np.ndarray, sigma: float = 0.8) -> float:
    """CKA with Gaussian kernels (bandwidth ``sigma`` × the median pairwise distance of each view)."""
    def gram(a):
        a = np.asarray(a, dtype=np.float64)
        sq = np.sum(a * a, 1)
        d = np.maximum(sq[:, None] + sq[None, :] - 2 * a @ a.T, 0)
        med = np.median(d[np.triu_indices_from(d, 1)]) if len(a) > 1 else 1.0
        return np.exp(-d / (2 * (sigma ** 2) * max(med, 1e-12)))

    def centre(k):
        n = len(k)
        h = np.eye(n) - 1.0 / n
        return h @ k @ h
    kx, ky = centre(gram(x)), centre(gram(y))
    den = np.linalg.norm(kx) * np.linalg.norm(ky)
    return float(np.sum(kx * ky) / den) if den > 0 else float("nan")


def one_hot(labels: np.ndarray) -> np.ndarray:
    """``(n, classes)`` indicator of the label values present."""
    values, idx = np.unique(labels, return_inverse=True)
    out = np.zeros((len(labels), len(values)))
    out[np.arange(len(labels)), idx] = 1.0
    return out


def control_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: each label type mapped to a random class drawn from the
    empirical label distribution (the same map for every frame of that type)."""
    rng = np.random.default_rng(seed)
    values, counts = np.unique(labels, return_counts=True)
    mapped = rng.choice(values, size=len(values), p=counts / counts.sum())
    return mapped[np.searchsorted(values, labels)]


def split_by_utterance(groups: np.ndarray, test_share: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks over frames such that no utterance is in both."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    test_ids = rng.choice(ids, size=max(1, int(round(test_share * len(ids)))), replace=False)
    test = np.isin(groups, test_ids)
    return ~test, test


def probe_predictions(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                      max_iter: int = 300) -> np.ndarray | None:
    """The labels a standardized multinomial logistic-regression probe, fitted on the ``train``
    frames, gives the ``test`` frames (``None`` when the training frames hold fewer than two labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(labels[train])) < 2 or not test.any():
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, tol=1e-3))
    probe.fit(x[train], labels[train])
    return probe.predict(x[test])


def probe_hits(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
               max_iter: int = 300) -> np.ndarray | None:
    """Whether `probe_predictions`' probe labels each ``test`` frame right."""
    pred = probe_predictions(x, labels, train, test, max_iter)
    return None if pred is None else pred == labels[test]


def probe_accuracy(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                   max_iter: int = 300) -> float:
    """Test accuracy of `probe_hits`' probe."""
    hits = probe_hits(x, labels, train, test, max_iter)
    return float("nan") if hits is None else float(np.mean(hits))


def majority_rate(labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Accuracy of always predicting the training split's most frequent label."""
    values, counts = np.unique(labels[train], return_counts=True)
    return float(np.mean(labels[test] == values[counts.argmax()]))
