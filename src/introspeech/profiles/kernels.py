"""Accumulation loops compiled with numba (a librosa dependency).

Written by hand because numpy has no "add rows into groups" primitive that is both fast and
order-deterministic: ``np.add.at`` is slow, sorting + ``reduceat`` copies every row, and a one-hot
matmul costs groups × frames × channels. These loops add each row once, in frame order, straight
from float32 activations into float64 sums.

They read activations time-major, ``(time, channels)``, so that every update is a contiguous row
that LLVM vectorizes; the caller transposes each layer once (numpy's blocked copy). One call per
layer does everything that layer contributes: NAP sums of both labellings and the windowed sums,
whose (group, offset) targets are listed per frame (`frame_targets`) so each row is read while
it is in cache.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def frame_targets(groups: np.ndarray, centres: np.ndarray, half: int, n_frames: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows around occurrences (group ``groups[i]``, centre frame ``centres[i]``), listed by
    frame: frame t feeds window offsets ``k[ptr[t]:ptr[t+1]]`` of groups ``g[ptr[t]:ptr[t+1]]``
    (occurrence order within a frame; a counting sort). Returns ``(ptr, g, k)``."""
    width = 2 * half + 1
    ptr = np.zeros(n_frames + 1, dtype=np.int64)
    for i in range(groups.shape[0]):
        for k in range(width):
            t = centres[i] - half + k
            if 0 <= t < n_frames:
                ptr[t + 1] += 1
    for t in range(n_frames):
        ptr[t + 1] += ptr[t]
    fill = ptr[:-1].copy()
    g = np.empty(ptr[n_frames], dtype=np.int64)
    kk = np.empty(ptr[n_frames], dtype=np.int64)
    for i in range(groups.shape[0]):
        for k in range(width):
            t = centres[i] - half + k
            if 0 <= t < n_frames:
                g[fill[t]] = groups[i]
                kk[fill[t]] = k
                fill[t] += 1
    return ptr, g, kk


@njit(inline="always", nogil=True)
def _nap_row(a: np.ndarray, t: int, g: int, sums: np.ndarray, sumsq: np.ndarray, counts: np.ndarray) -> None:
    counts[g] += 1.0
    for c in range(a.shape[1]):
        v = np.float64(a[t, c])
        sums[g, c] += v
        sumsq[c] += v * v


@njit(inline="always", nogil=True)
def _window_rows(a: np.ndarray, t: int, ptr: np.ndarray, wg: np.ndarray, wk: np.ndarray, wsum: np.ndarray,
                 wcount: np.ndarray) -> None:
    for j in range(ptr[t], ptr[t + 1]):
        g, k = wg[j], wk[j]
        wcount[g, k] += 1.0
        for c in range(a.shape[1]):
            wsum[g, k, c] += np.float64(a[t, c])


class Labelling(NamedTuple):
    """One labelling's part of a layer's accumulation (letters or phonemes): the label of every frame
    (-1: none), its NAP sums ``(groups, channels)``, per-channel sums of squares and group counts, the
    window targets of `frame_targets` and the windowed sums ``(groups, offsets, channels)`` and counts."""

    labels: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray
    counts: np.ndarray
    ptr: np.ndarray
    window_groups: np.ndarray
    window_offsets: np.ndarray
    window_sums: np.ndarray
    window_counts: np.ndarray


@njit(inline="always", nogil=True)
def _frame(a: np.ndarray, t: int, lab) -> None:
    g = lab[0][t]
    if g >= 0:
        _nap_row(a, t, g, lab[1], lab[2], lab[3])
    _window_rows(a, t, lab[4], lab[5], lab[6], lab[7], lab[8])


@njit(cache=True, nogil=True)
def accumulate_layer(a: np.ndarray, first: Labelling, second: Labelling) -> None:
    """One layer's activations ``a`` ``(time, channels)`` into two labellings' sums (letters and
    phonemes), frame by frame. Per labelling: frame t with ``g = labels[t] ≥ 0`` adds ``a[t]`` to
    ``sums[g]``, ``a[t]²`` to ``sumsq`` and 1 to ``counts[g]``; and ``a[t]`` to ``window_sums[g', o]``
    for every window target (g', o) that `frame_targets` lists for t (``ptr`` of length time+1;
    all zeros: no windows)."""
    for t in range(a.shape[0]):
        _frame(a, t, first)
        _frame(a, t, second)


@njit(cache=True, nogil=True)
def add_windows(wsum: np.ndarray, wcount: np.ndarray, a: np.ndarray, ptr: np.ndarray, wg: np.ndarray,
                wk: np.ndarray) -> None:
    """The windowed sums alone (input patterns, gradient-adjusted NAPs): ``a`` ``(time, channels)``,
    targets from `frame_targets`, ``wsum`` ``(groups, 2·half+1, channels)``."""
    for t in range(a.shape[0]):
        _window_rows(a, t, ptr, wg, wk, wsum, wcount)
