"""Common pieces of the synthesizer back ends: voices, rendered results, phone-name mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ...text import SILENCE, cmu_dictionary
from ..utterance import Segment


@dataclass(frozen=True)
class Voice:
    """A synthesizer voice with its prosody settings (``params`` are back-end specific)."""

    synth: str  # "espeak" | "festival" | "flite"
    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def speaker(self) -> str:
        """Speaker id: the voice without prosody settings (what held-out splits are made of)."""
        return f"{self.synth}:{self.name}"

    def param(self, key: str, default: float) -> float:
        return dict(self.params).get(key, default)


@dataclass
class Rendered:
    """One synthesized utterance at 16 kHz with contiguous phone segments and word spans."""

    wave: np.ndarray
    words: list[Segment]
    phones: list[Segment]
    raw_phones: list[str] = field(default_factory=list)  # the synthesizer's own names


class UnmappedPhoneError(KeyError):
    """A synthesizer produced a phone name the mapping table does not know."""


def map_phone(table: dict[str, tuple[str, ...]], name: str, synth: str) -> tuple[str, ...]:
    """ARPAbet phones for a synthesizer phone name (``()`` for silence/modifiers)."""
    try:
        return table[name]
    except KeyError:
        raise UnmappedPhoneError(f"{synth} phone {name!r} has no ARPAbet mapping") from None


def build_segments(
    events: list[tuple[float, str, int]], table: dict[str, tuple[str, ...]], synth: str,
    duration: float, text_words: list[str],
) -> tuple[list[Segment], list[Segment], list[str]]:
    """Phone and word segments from ``(start_s, synth_phone, word_index or -1)`` events.

    Each event lasts until the next one (or the end of the audio). A synthesizer phone that maps
    to several ARPAbet phones (e.g. espeak ``A@`` → AA R) is split into equal parts; one that maps
    to nothing (a modifier) extends the previous phone. Gaps become ``sil``.
    """
    phones: list[Segment] = []
    owner: list[int] = []
    raw = []
    for k, (start, name, word) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else duration
        end = min(end, duration)
        if end <= start:
            continue
        raw.append(name)
        mapped = map_phone(table, name, synth)
        if mapped == ("",):  # modifier: belongs to the previous phone
            if phones:
                phones[-1] = Segment(phones[-1].start, end, phones[-1].label)
            continue
        if not mapped:
            mapped, word = (SILENCE,), -1
        step = (end - start) / len(mapped)
        for j, p in enumerate(mapped):
            phones.append(Segment(start + j * step, start + (j + 1) * step, p))
            owner.append(word)
    # contiguous cover from 0 to the end, silence where nothing was said
    out: list[Segment] = []
    out_owner: list[int] = []
    t = 0.0
    for seg, w in zip(phones, owner):
        if seg.start > t + 1e-6:
            out.append(Segment(t, seg.start, SILENCE))
            out_owner.append(-1)
        out.append(Segment(max(seg.start, t), seg.end, seg.label))
        out_owner.append(w)
        t = seg.end
    if duration > t + 1e-6:
        out.append(Segment(t, duration, SILENCE))
        out_owner.append(-1)
    merged: list[Segment] = []
    merged_owner: list[int] = []
    for seg, w in zip(out, out_owner):  # merge neighbouring silences
        if merged and seg.label == SILENCE and merged[-1].label == SILENCE:
            merged[-1] = Segment(merged[-1].start, seg.end, SILENCE)
            continue
        merged.append(seg)
        merged_owner.append(w)
    words = []
    for w, label in enumerate(text_words):
        mine = [s for s, o in zip(merged, merged_owner) if o == w]
        if mine:
            words.append(Segment(mine[0].start, mine[-1].end, label))
    return merged, words, raw


# CMU/radio phone names used by flite and festival (lower case) → ARPAbet.
CMU_TABLE: dict[str, tuple[str, ...]] = {
    **{p.lower(): (p,) for p in (
        "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
        "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
        "T", "TH", "V", "W", "Y", "Z", "ZH")},
    "ax": ("AH",), "axr": ("ER",), "ix": ("IH",), "ux": ("UW",), "hv": ("HH",), "dx": ("T",),
    "nx": ("N",), "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"),
    "pau": (), "h#": (), "brth": (), "sil": (), "ssil": (),
}


@lru_cache(maxsize=4096)
def _prons(word: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(p) for p in cmu_dictionary().get(word, [[]]))


def _edit(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def segment_words(phones: list[str], words: list[str]) -> list[int]:
    """Assign each (non-silence, ARPAbet) phone to a word: minimum total edit distance between
    each word's contiguous phone run and its closest CMUdict pronunciation (dynamic programming)."""
    n, m = len(phones), len(words)
    inf = float("inf")
    cost = [[inf] * (n + 1) for _ in range(m + 1)]
    back = [[0] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0.0
    for w in range(1, m + 1):
        prons = _prons(words[w - 1])
        longest = max(len(p) for p in prons) + 3
        for j in range(1, n + 1):
            for i in range(max(w - 1, j - longest), j):
                if cost[w - 1][i] == inf:
                    continue
                piece = tuple(phones[i:j])
                c = cost[w - 1][i] + min(_edit(piece, p) for p in prons)
                if c < cost[w][j]:
                    cost[w][j], back[w][j] = c, i
    owner = [0] * n
    j = n
    for w in range(m, 0, -1):
        i = back[w][j]
        owner[i:j] = [w - 1] * (j - i)
        j = i
    return owner



def assign_words(names: list[str], table: dict[str, tuple[str, ...]], ranges: list[tuple[int, int] | None],
                 words: list[str]) -> list[int]:
    """Word index per synthesizer phone (``-1`` for silence and modifiers).

    ``ranges[i]`` is the span of transcript words the synthesizer says phone i belongs to (or
    None). A run of consecutive phones sharing a span of several words (flite: the whole
    sentence; espeak: words it spoke as one, e.g. "out of") is divided by `segment_words`.
    """
    speech = [i for i, n in enumerate(names) if ranges[i] is not None and table.get(n, (n,)) not in ((), ("",))]
    owner = [-1] * len(names)
    k = 0
    while k < len(speech):
        span = ranges[speech[k]]
        run = [speech[k]]
        k += 1
        while k < len(speech) and ranges[speech[k]] == span:
            run.append(speech[k])
            k += 1
        a, b = span
        if b - a <= 1 or len(run) < b - a:
            for i in run:
                owner[i] = a
            continue
        flat, src = [], []
        for i in run:
            for p in table.get(names[i], (names[i].upper(),)):
                flat.append(p)
                src.append(i)
        seen = set()
        for o, i in zip(segment_words(flat, words[a:b]), src):
            if i not in seen:
                owner[i] = a + o
                seen.add(i)
    return owner
