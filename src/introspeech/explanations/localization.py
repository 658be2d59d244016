"""Localization against exact timings: how much of a letter's |relevance| lies in the sound that spells it.

A word's letters are aligned to its phones (the corpus' timed phones within the word) by a
monotone dynamic programme: each letter takes a run of 0–2 phones, a phone that the letter can
spell costs 0 (`LETTER_PHONES`, written from English spelling), any other 1.5, a silent letter
0.7. A silent letter (the ``h`` of "sh", a final ``e``) shares the phones of the letter before it
(the first letter of a word: the one after). A letter's phone span is then the time from the start
of its first phone to the end of its last.

The share of a map inside a span is Σ|map| over the span's frames / Σ|map|; the chance level is
the share of a map spread evenly over the frame's receptive field.
"""

from __future__ import annotations

import numpy as np

from ..corpus.utterance import Segment
from ..text import SILENCE

LETTER_PHONES: dict[str, set[str]] = {
    "a": {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "EY", "IH", "ER"}, "b": {"B"}, "c": {"K", "S", "CH", "SH"},
    "d": {"D", "JH", "T"}, "e": {"EH", "IY", "IH", "AH", "EY", "ER"}, "f": {"F"}, "g": {"G", "JH", "ZH"},
    "h": {"HH"}, "i": {"IH", "AY", "IY", "AH", "ER", "Y"}, "j": {"JH", "Y"}, "k": {"K"}, "l": {"L"},
    "m": {"M"}, "n": {"N", "NG"}, "o": {"AA", "AO", "OW", "AH", "UW", "AW", "OY", "ER", "UH", "W"},
    "p": {"P", "F"}, "q": {"K"}, "r": {"R", "ER"}, "s": {"S", "Z", "SH", "ZH"},
    "t": {"T", "SH", "CH", "TH", "DH", "D"}, "u": {"AH", "UW", "UH", "Y", "ER", "W", "IH"}, "v": {"V"},
    "w": {"W", "UW"}, "x": {"K", "S", "Z", "G"}, "y": {"Y", "IY", "AY", "IH"}, "z": {"Z", "S", "ZH"},
    "'": set(),
}
"""Phones each letter can spell (ARPAbet without stress); digraphs come from silent letters."""

_MISMATCH, _SILENT = 1.5, 0.7


def align_letters(word: str, phones: list[str]) -> list[list[int]]:
    """For each letter of ``word``, the indices of the phones it spells (a run; empty: silent)."""
    n, m = len(word), len(phones)
    inf = float("inf")
    cost = np.full((n + 1, m + 1), inf)
    back = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        spell = LETTER_PHONES.get(word[i - 1], set())
        for j in range(m + 1):
            for k in (0, 1, 2):  # phones this letter takes
                if j - k < 0 or cost[i - 1, j - k] == inf:
                    continue
                c = cost[i - 1, j - k] + (_SILENT if k == 0 else sum(
                    0.0 if p in spell else _MISMATCH for p in phones[j - k:j]))
                if c < cost[i, j]:
                    cost[i, j], back[i, j] = c, k
    if cost[n, m] == inf:  # more than two phones a letter: give the rest to the last letter
        runs = [[i] if i < m else [] for i in range(n)]
        runs[-1] = list(range(min(n - 1, m), m))
        return runs
    runs, j = [], m
    for i in range(n, 0, -1):
        k = int(back[i, j])
        runs.append(list(range(j - k, j)))
        j -= k
    return runs[::-1]


def letter_spans(words: list[Segment], phones: list[Segment], text: str) -> list[tuple[float, float, float, float] | None]:
    """Per character of the normalized transcript ``text``: (phone start, phone end, word start,
    word end) in seconds, or None (spaces, and words the alignment does not match)."""
    names = text.split(" ")
    if len(names) != len(words):
        return [None] * len(text)
    out: list = []
    for w_index, (name, w) in enumerate(zip(names, words)):
        inside = [p for p in phones if w.start - 1e-6 <= 0.5 * (p.start + p.end) <= w.end + 1e-6 and p.label != SILENCE]
        runs = align_letters(name, [p.label for p in inside]) if inside else [[] for _ in name]
        filled = list(runs)
        for i in range(len(filled)):  # a silent letter shares its neighbour's phones
            if not filled[i]:
                filled[i] = next((filled[k] for k in range(i - 1, -1, -1) if filled[k]), None) or \
                    next((runs[k] for k in range(i + 1, len(runs)) if runs[k]), [])
        for run in filled:
            out.append((inside[run[0]].start, inside[run[-1]].end, w.start, w.end) if run else None)
        if w_index < len(words) - 1:
            out.append(None)  # the space
    return out


def share(relevance: np.ndarray, lo: int, hi: int) -> float:
    """Σ|relevance| over input frames ``[lo, hi)`` / Σ|relevance| (the last axis is time)."""
    prof = np.abs(relevance).reshape(-1, relevance.shape[-1]).sum(0)
    total = prof.sum()
    return float(prof[max(lo, 0):max(hi, 0)].sum() / total) if total > 0 else float("nan")


def chance_share(window: tuple[int, int], lo: int, hi: int) -> float:
    """The share of a map spread evenly over the receptive field ``window`` (input frames)."""
    a, b = window
    return max(0, min(b, hi) - max(a, lo)) / max(1, b - a)
