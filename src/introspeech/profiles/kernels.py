"""Accumulation loops compiled with numba (a librosa dependency).

Written by hand because numpy has no "add rows into groups" primitive that is both fast and
order-deterministic: ``np.add.at`` is slow, sorting + ``reduceat`` copies every row, and a one-hot
matmul costs groups × frames × channels. These loops add each row once, in frame order, straight
from the model's float32 activations into float64 sums; memory traffic is the whole cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def add_rows(sums: np.ndarray, sumsq: np.ndarray, counts: np.ndarray, a: np.ndarray, labels: np.ndarray) -> None:
    """``sums[g] += a[t]``, ``sumsq += a[t]²`` and ``counts[g] += 1`` for every t with g = labels[t] ≥ 0.

    ``a``: ``(time, channels)``; ``sums``: ``(groups, channels)``; ``sumsq``: ``(channels,)``."""
    n_t, n_c = a.shape
    for t in range(n_t):
        g = labels[t]
        if g < 0:
            continue
        counts[g] += 1.0
        for c in range(n_c):
            v = np.float64(a[t, c])
            sums[g, c] += v
            sumsq[c] += v * v


@njit(cache=True, nogil=True)
def add_windows(wsum: np.ndarray, wcount: np.ndarray, a: np.ndarray, groups: np.ndarray, centres: np.ndarray,
                half: int) -> None:
    """For occurrence i (group g, centre frame c) and k in [0, 2·half]: ``wsum[g, k] += a[c - half + k]``
    where that frame exists, and ``wcount[g, k] += 1``.

    ``a``: ``(time, channels)``; ``wsum``: ``(groups, 2·half+1, channels)``; ``wcount``: ``(groups, 2·half+1)``."""
    n_t, n_c = a.shape
    for i in range(groups.shape[0]):
        g = groups[i]
        for k in range(2 * half + 1):
            t = centres[i] - half + k
            if t < 0 or t >= n_t:
                continue
            wcount[g, k] += 1.0
            for c in range(n_c):
                wsum[g, k, c] += np.float64(a[t, c])
