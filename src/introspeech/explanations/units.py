"""The units the explanation table explains: a letter, a phoneme of a phoneme recognizer, or one of
Whisper's tokens, each at one output frame with the input spans it should be found in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Letter:
    """A reference unit to explain (a letter, or a phoneme of a phoneme recognizer): class and
    output frame, its phone and word spans (input frames)."""

    utterance: str
    symbol: int
    frame: int
    phone: tuple[int, int] | None
    word: tuple[int, int] | None


def frame_span(start: float, end: float, frame_rate: float) -> tuple[int, int]:
    """Seconds ``[start, end)`` as the input frames that cover them."""
    return int(np.floor(start * frame_rate)), int(np.ceil(end * frame_rate))


def spaced(units: list, limit: int) -> list:
    """At most ``limit`` of ``units``, evenly spaced (0: all)."""
    if limit and len(units) > limit:
        units = [units[int(i)] for i in np.linspace(0, len(units) - 1, limit)]
    return units
