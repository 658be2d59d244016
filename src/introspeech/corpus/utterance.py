"""The `Utterance` record: one recording, its transcript and optional time alignments."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class Segment:
    """A labelled time span in seconds (a word or a phone)."""

    start: float
    end: float
    label: str

    def to_list(self) -> list:
        return [round(self.start, 5), round(self.end, 5), self.label]


@dataclass
class Utterance:
    """One utterance. Times are seconds from the start of the audio file."""

    id: str
    audio_path: Path
    text: str
    speaker: str = ""
    duration: float | None = None
    words: list[Segment] | None = None
    phones: list[Segment] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check_alignment(self, duration: float | None = None, tolerance: float = 0.02) -> None:
        """Raise `InputError` if an alignment is unordered, ends after the audio, or comes from a
        TextGrid that spans another length than the audio (``extra["alignment_extent"]``)."""
        dur = duration if duration is not None else self.duration
        extent = self.extra.get("alignment_extent")
        if extent and dur is not None and abs(float(extent[1]) - dur) > max(tolerance, 0.05):
            raise InputError(extent[0], f"utterance {self.id}: the TextGrid spans {float(extent[1]):.3f} s but the "
                                        f"audio lasts {dur:.3f} s: it aligns another recording")
        for name, segs in (("words", self.words), ("phones", self.phones)):
            if not segs:
                continue
            prev = 0.0
            for s in segs:
                if s.end < s.start or s.start < prev - 1e-6:
                    raise InputError(self.audio_path, f"utterance {self.id}: {name} alignment is not "
                                     f"monotone at {s.label!r} ({s.start:.3f}-{s.end:.3f} s)")
                prev = s.end
            if dur is not None and segs[-1].end > dur + tolerance:
                raise InputError(self.audio_path, f"utterance {self.id}: {name} alignment ends at "
                                 f"{segs[-1].end:.3f} s, after the audio ({dur:.3f} s)")


def segments(raw: Any, source: str | Path, line: int | None, key: str) -> list[Segment] | None:
    """Parse ``[[start, end, label], ...]`` (or dicts with those keys) into segments."""
    if raw is None:
        return None
    out = []
    try:
        for item in raw:
            if isinstance(item, dict):
                out.append(Segment(float(item["start"]), float(item["end"]), str(item["label"])))
            else:
                s, e, lab = item
                out.append(Segment(float(s), float(e), str(lab)))
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(source, f"bad {key!r} alignment ({exc})", line) from None
    return out


def fingerprint(utts: list[Utterance]) -> str:
    """Identity of a corpus (ids and audio paths, in order) for checking a resumed run."""
    h = hashlib.sha1()
    for u in utts:
        h.update(f"{u.id}\t{u.audio_path}\n".encode())
    return h.hexdigest()
