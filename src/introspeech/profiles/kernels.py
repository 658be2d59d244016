"""Accumulation loops compiled with numba (a librosa dependency).

Written by hand because numpy has no "add rows into groups" primitive that is both fast and
order-deterministic: ``np.add.at`` is slow, sorting + ``reduceat`` copies every row, and a one-hot
matmul costs groups × frames × channels. These loops add each row once, in frame order, straight
from the model's float32 activations into float64 sums; memory traffic is the whole cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always", nogil=True)
def _add_row(dst: np.ndarray, sumsq: np.ndarray, src: np.ndarray) -> None:
    for c in range(src.shape[0]):
        v = np.float64(src[c])
        dst[c] += v
        sumsq[c] += v * v


@njit(cache=True, nogil=True)
def add_rows(sums1: np.ndarray, sumsq1: np.ndarray, counts1: np.ndarray, labels1: np.ndarray,
             sums2: np.ndarray, sumsq2: np.ndarray, counts2: np.ndarray, labels2: np.ndarray,
             a: np.ndarray, c0: int) -> None:
    """For two labellings of the same frames (letters and phonemes) in one pass over the rows,
    for each t with g = labels_k[t] ≥ 0, ``sums_k[g] += a[t, c0:c0+C]``,
    ``sumsq_k += a[t, c0:c0+C]²``, ``counts_k[g] += 1``.

    ``a``: ``(time, channels)`` (several layers side by side); ``sums_k``: ``(groups_k, C)``."""
    n_t = a.shape[0]
    n_c = sums1.shape[1]
    for t in range(n_t):
        g1, g2 = labels1[t], labels2[t]
        if g1 < 0 and g2 < 0:
            continue
        src = a[t, c0:c0 + n_c]  # 1-D views let LLVM vectorize the loops; the row stays in L1 for both
        if g1 >= 0:
            counts1[g1] += 1.0
            _add_row(sums1[g1], sumsq1, src)
        if g2 >= 0:
            counts2[g2] += 1.0
            _add_row(sums2[g2], sumsq2, src)


@njit(cache=True, nogil=True)
def add_windows(wsum: np.ndarray, wcount: np.ndarray, a: np.ndarray, c0: int, groups: np.ndarray,
                centres: np.ndarray, half: int) -> None:
    """For occurrence i (group g, centre frame c) and k in [0, 2·half]: ``wsum[g, k] += a[c - half + k, c0:c0+C]``
    where that frame exists, and ``wcount[g, k] += 1``.

    ``a``: ``(time, channels)``; ``wsum``: ``(groups, 2·half+1, C)``; ``wcount``: ``(groups, 2·half+1)``."""
    n_t = a.shape[0]
    n_c = wsum.shape[2]
    for i in range(groups.shape[0]):
        g = groups[i]
        for k in range(2 * half + 1):
            t = centres[i] - half + k
            if t < 0 or t >= n_t:
                continue
            wcount[g, k] += 1.0
            src = a[t, c0:c0 + n_c]
            dst = wsum[g, k]
            for c in range(n_c):
                dst[c] += np.float64(src[c])
