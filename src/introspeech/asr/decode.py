"""CTC decoding: greedy transcripts with the frame of every emitted letter, and forced alignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

from ..text import BLANK, LETTERS, encode


@dataclass
class Emission:
    """A letter and its first and last output frame (on the greedy path, or in a forced alignment)."""

    symbol: int
    start: int
    end: int

    @property
    def letter(self) -> str:
        return LETTERS[self.symbol]


def greedy_runs(best: np.ndarray, blank: int = BLANK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Emitted letters of a best-symbol-per-frame path as arrays: symbol, first and last frame."""
    if best.size == 0:
        return (np.zeros(0, dtype=np.int64),) * 3
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts[1:] - 1, best.size - 1]
    keep = best[starts] != blank
    return best[starts][keep].astype(np.int64), starts[keep], ends[keep]


def greedy_path(scores: torch.Tensor) -> list[Emission]:
    """Greedy CTC path of one utterance's scores ``(n_symbols, frames)``: runs of equal non-blank
    symbols collapse into one emitted letter."""
    sym, starts, ends = greedy_runs(scores.argmax(dim=0).cpu().numpy())
    return [Emission(int(s), int(a), int(b)) for s, a, b in zip(sym, starts, ends)]


def greedy_decode(scores: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
    """Transcripts of a batch of scores ``(batch, n_symbols, frames)``."""
    out = []
    for b in range(scores.shape[0]):
        n = int(lengths[b]) if lengths is not None else scores.shape[2]
        out.append("".join(e.letter for e in greedy_path(scores[b, :, :n])))
    return out


LetterSpan = Emission
"""A reference letter and the output frames ``[start, end]`` the forced alignment gives it."""


def forced_align(log_probs: torch.Tensor, text: str) -> list[LetterSpan]:
    """CTC Viterbi alignment of a normalized transcript to output frames.

    ``log_probs``: ``(n_symbols, frames)`` log-softmax scores of one utterance. Returns one span
    per letter of ``text`` (frames where the best path is on that letter; blanks excluded).
    Raises ValueError when the transcript needs more frames than there are.
    """
    return [LetterSpan(int(s), int(a), int(b)) for s, a, b in zip(*forced_align_arrays(log_probs, text))]


def forced_align_arrays(log_probs: torch.Tensor | np.ndarray, text: str | list[int], blank: int = BLANK
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`forced_align` as arrays (symbol, first and last frame of each letter), for bulk use;
    ``text`` may be given as output indices already (another alphabet, its ``blank``)."""
    lab = np.asarray(encode(text) if isinstance(text, str) else text, dtype=np.int64)
    lp = log_probs.detach().double().cpu().numpy() if isinstance(log_probs, torch.Tensor) else log_probs
    if lp.dtype not in (np.float32, np.float64):
        lp = lp.astype(np.float64)
    lp = np.ascontiguousarray(lp)  # float32 scores are read as float64: the same arithmetic as converting first
    n_frames = lp.shape[1]
    ext, skip_ok, need = _extended(lab, blank)
    if need > n_frames:
        raise ValueError(f"transcript of {lab.size} letters needs {need} frames, only {n_frames} available")
    if n_frames * ext.size <= VITERBI_CELLS:
        path = ctc_viterbi(lp, ext, skip_ok)
    else:  # a long recording: the same path, backpointers recomputed block by block
        path = ctc_viterbi_blocks(lp, ext, skip_ok, max(1, int(np.sqrt(n_frames))))
    return _letter_runs(path, lab)


@njit(cache=True, nogil=True)
def _extended(lab: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The extended label sequence (blank, l1, blank, …, blank), where a state may be reached from
    two states back (between different letters), and the frames the transcript needs at least."""
    n = lab.shape[0]
    ext = np.full(2 * n + 1, blank, dtype=np.int64)
    skip_ok = np.zeros(2 * n + 1, dtype=np.bool_)
    need = n
    for i in range(n):
        ext[2 * i + 1] = lab[i]
        if i and lab[i] == lab[i - 1]:
            need += 1  # a blank must separate repeated letters
        skip_ok[2 * i + 1] = i > 0 and lab[i] != lab[i - 1]
    return ext, skip_ok, need


@njit(cache=True, nogil=True)
def _letter_runs(path: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Letters of a state path (odd states are letters): symbol, first and last frame of each."""
    sym = np.empty(lab.shape[0], dtype=np.int64)
    first = np.empty(lab.shape[0], dtype=np.int64)
    last = np.empty(lab.shape[0], dtype=np.int64)
    n, prev = 0, -1
    for t in range(path.shape[0]):
        if path[t] % 2 == 1:
            k = path[t] // 2
            if k != prev:
                sym[n], first[n] = lab[k], t
                n += 1
                prev = k
            last[n - 1] = t
    return sym[:n], first[:n], last[:n]


VITERBI_CELLS = 1 << 26
"""Frames × states above which the Viterbi backpointers (one byte a cell) are kept per block only."""


@njit(inline="always", nogil=True)
def _viterbi_step(lp: np.ndarray, ext: np.ndarray, skip_ok: np.ndarray, t: int, score: np.ndarray,
                  new: np.ndarray, back_row: np.ndarray) -> None:
    for s in range(ext.shape[0]):
        best, arg = score[s], 0
        if s >= 1 and score[s - 1] > best:
            best, arg = score[s - 1], 1
        if s >= 2 and skip_ok[s] and score[s - 2] > best:
            best, arg = score[s - 2], 2
        back_row[s] = arg
        new[s] = best + lp[t, ext[s]]
    score[:] = new


@njit(inline="always", nogil=True)
def _viterbi_start(lp: np.ndarray, ext: np.ndarray) -> np.ndarray:
    score = np.full(ext.shape[0], -np.inf)
    score[0] = lp[0, ext[0]]
    if ext.shape[0] > 1:
        score[1] = lp[0, ext[1]]
    return score


@njit(inline="always", nogil=True)
def _viterbi_end(score: np.ndarray) -> int:
    n_states = score.shape[0]
    if n_states > 1 and score[n_states - 2] > score[n_states - 1]:
        return n_states - 2
    return n_states - 1


@njit(cache=True, nogil=True)
def ctc_viterbi_blocks(lp: np.ndarray, ext: np.ndarray, skip_ok: np.ndarray, block: int) -> np.ndarray:
    """`ctc_viterbi` in O((frames / block + block) · states) memory: the forward pass keeps the
    scores at the start of every block of ``block`` frames; the backtrace recomputes one block's
    backpointers at a time from them (the same arithmetic, so the same path)."""
    n_frames, n_states = lp.shape[1], ext.shape[0]
    lp = np.ascontiguousarray(lp.T)  # (frames, symbols): each frame's scores in one cache line or two
    n_blocks = (n_frames - 1 + block - 1) // block  # blocks of transitions t = 1 … n_frames-1
    marks = np.empty((max(n_blocks, 1), n_states))
    score = _viterbi_start(lp, ext)
    new = np.empty(n_states)
    back = np.zeros((block, n_states), dtype=np.int8)
    for k in range(n_blocks):
        marks[k] = score
        for t in range(1 + k * block, min(1 + (k + 1) * block, n_frames)):
            _viterbi_step(lp, ext, skip_ok, t, score, new, back[0])
    s = _viterbi_end(score)
    path = np.empty(n_frames, dtype=np.int64)
    for k in range(n_blocks - 1, -1, -1):
        a, b = 1 + k * block, min(1 + (k + 1) * block, n_frames)
        score[:] = marks[k]
        for t in range(a, b):
            _viterbi_step(lp, ext, skip_ok, t, score, new, back[t - a])
        for t in range(b - 1, a - 1, -1):
            path[t] = s
            s -= back[t - a, s]
    path[0] = s
    return path


@njit(cache=True, nogil=True)
def ctc_viterbi(lp: np.ndarray, ext: np.ndarray, skip_ok: np.ndarray) -> np.ndarray:
    """Best CTC state path through the extended label sequence ``ext`` (blank, l1, blank, …).

    ``lp``: ``(symbols, frames)`` log-probabilities (float64, or float32 read as float64); returns
    the state index per frame."""
    n_frames, n_states = lp.shape[1], ext.shape[0]
    lp = np.ascontiguousarray(lp.T)  # (frames, symbols): each frame's scores in one cache line or two
    score = _viterbi_start(lp, ext)
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    new = np.empty(n_states)
    for t in range(1, n_frames):
        _viterbi_step(lp, ext, skip_ok, t, score, new, back[t])
    s = _viterbi_end(score)
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = s
        s -= back[t, s]
    return path
