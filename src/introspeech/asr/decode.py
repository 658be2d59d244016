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


def greedy_path(scores: torch.Tensor) -> list[Emission]:
    """Greedy CTC path of one utterance's scores ``(n_symbols, frames)``: runs of equal non-blank
    symbols collapse into one emitted letter."""
    best = scores.argmax(dim=0).tolist()
    out: list[Emission] = []
    prev = BLANK
    for t, s in enumerate(best):
        if s != BLANK and s == prev:
            out[-1].end = t
        elif s != BLANK:
            out.append(Emission(s, t, t))
        prev = s
    return out


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
    labels = encode(text)
    lp = log_probs.detach().double().cpu().numpy()
    n_frames = lp.shape[1]
    ext = [BLANK]
    for c in labels:
        ext += [c, BLANK]
    n_states = len(ext)
    need = len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    if need > n_frames:
        raise ValueError(f"transcript of {len(labels)} letters needs {need} frames, only {n_frames} available")
    ext_arr = np.array(ext)
    skip_ok = np.zeros(n_states, dtype=bool)  # may jump from s-2 to s (different letters)
    skip_ok[3::2] = ext_arr[3::2] != ext_arr[1:-2:2]
    path = ctc_viterbi(np.ascontiguousarray(lp), ext_arr, skip_ok)
    spans: list[LetterSpan] = []
    for t, st in enumerate(path):
        if st % 2 == 1:
            k = st // 2
            if len(spans) == k:
                spans.append(LetterSpan(labels[k], t, t))
            else:
                spans[k].end = t
    return spans


@njit(cache=True, nogil=True)
def ctc_viterbi(lp: np.ndarray, ext: np.ndarray, skip_ok: np.ndarray) -> np.ndarray:
    """Best CTC state path through the extended label sequence ``ext`` (blank, l1, blank, …).

    ``lp``: ``(symbols, frames)`` log-probabilities (float64); returns the state index per frame."""
    n_frames = lp.shape[1]
    n_states = ext.shape[0]
    neg = -np.inf
    score = np.full(n_states, neg)
    score[0] = lp[ext[0], 0]
    if n_states > 1:
        score[1] = lp[ext[1], 0]
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    new = np.empty(n_states)
    for t in range(1, n_frames):
        for s in range(n_states):
            best, arg = score[s], 0
            if s >= 1 and score[s - 1] > best:
                best, arg = score[s - 1], 1
            if s >= 2 and skip_ok[s] and score[s - 2] > best:
                best, arg = score[s - 2], 2
            back[t, s] = arg
            new[s] = best + lp[ext[s], t]
        score[:] = new
    s = n_states - 1
    if n_states > 1 and score[n_states - 2] > score[n_states - 1]:
        s = n_states - 2
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = s
        s -= back[t, s]
    return path
