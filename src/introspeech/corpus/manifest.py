"""JSONL manifests (NeMo-style keys plus our alignment keys): reader and writer.

One JSON object per line: ``audio_filepath``, ``text``, ``duration`` (NeMo), and optionally
``id``, ``speaker``, ``words`` and ``phones`` (``[[start_s, end_s, label], ...]``). Other keys are
kept in ``Utterance.extra`` and written back unchanged, so a manifest round-trips exactly.
Relative audio paths are relative to the manifest's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError
from .utterance import Utterance, segments

_KNOWN = ("audio_filepath", "text", "duration", "id", "speaker", "words", "phones")


def iter_manifest(path: str | Path) -> Iterator[Utterance]:
    """Yield the utterances of a JSONL manifest; a malformed line raises with its line number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found")
    base = path.parent
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, f"not UTF-8 text (byte {e.start} of the line); save the manifest as UTF-8",
                                 n) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"malformed JSON ({e.msg})", n) from None
            if not isinstance(obj, dict) or "audio_filepath" not in obj or "text" not in obj:
                raise InputError(path, "each line needs 'audio_filepath' and 'text'", n)
            _check_types(obj, path, n)
            audio = Path(obj["audio_filepath"])
            utt = Utterance(
                id=str(obj.get("id", audio.stem)),
                audio_path=audio if audio.is_absolute() else base / audio,
                text=str(obj["text"]),
                speaker=str(obj.get("speaker", "")),
                duration=float(obj["duration"]) if obj.get("duration") is not None else None,
                words=segments(obj.get("words"), path, n, "words"),
                phones=segments(obj.get("phones"), path, n, "phones"),
                extra={k: v for k, v in obj.items() if k not in _KNOWN},
            )
            yield utt


_TYPES = {"audio_filepath": (str,), "text": (str,), "duration": (int, float, type(None)), "id": (str, int),
          "speaker": (str, int, type(None)), "words": (list, type(None)), "phones": (list, type(None))}


def _check_types(obj: dict, path: Path, line: int) -> None:
    """Each known field has the type the format gives it (a number as transcript is an error, not "5")."""
    for key, types in _TYPES.items():
        if key in obj and (not isinstance(obj[key], types) or isinstance(obj[key], bool)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise InputError(path, f"field {key!r} must be {names}, got {type(obj[key]).__name__}", line)


def read_manifest(path: str | Path) -> list[Utterance]:
    """All utterances of a JSONL manifest."""
    return list(iter_manifest(path))


def utterance_to_json(utt: Utterance, base: Path | None = None) -> dict:
    """The manifest object of one utterance (audio path relative to ``base`` when inside it)."""
    audio = Path(utt.audio_path)
    if base is not None:
        try:
            audio = Path(os.path.relpath(audio, base)) if audio.resolve().is_relative_to(base.resolve()) else audio
        except ValueError:
            pass
    obj: dict = {"audio_filepath": audio.as_posix(), "text": utt.text}
    if utt.duration is not None:
        obj["duration"] = round(utt.duration, 5)
    obj["id"] = utt.id
    if utt.speaker:
        obj["speaker"] = utt.speaker
    if utt.words is not None:
        obj["words"] = [s.to_list() for s in utt.words]
    if utt.phones is not None:
        obj["phones"] = [s.to_list() for s in utt.phones]
    obj.update(utt.extra)
    return obj


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> int:
    """Write utterances as JSONL (atomically); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for utt in utterances:
            f.write(json.dumps(utterance_to_json(utt, path.parent), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
