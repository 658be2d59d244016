"""Readers for the LibriSpeech folder layout and Montreal-Forced-Aligner TextGrids."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .utterance import Segment, Utterance


def read_librispeech(root: str | Path, textgrids: str | Path | None = None) -> list[Utterance]:
    """Utterances of a LibriSpeech-style tree (``SPK/CHAPTER/SPK-CHAPTER.trans.txt`` + ``.flac``).

    With ``textgrids`` (a folder of MFA output, ``SPK/ID.TextGrid`` or flat ``ID.TextGrid``), word and
    phone alignments are attached where a TextGrid exists.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "LibriSpeech folder not found")
    out: list[Utterance] = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            if not text.strip():
                raise InputError(trans, f"utterance {uid} has an empty transcript", n)
            audio = trans.parent / f"{uid}.flac"
            out.append(Utterance(id=uid, audio_path=audio, text=text.strip(), speaker=uid.split("-")[0]))
    if textgrids is not None:
        tg_root = Path(textgrids)
        index = {p.stem: p for p in tg_root.rglob("*.TextGrid")}
        for utt in out:
            if utt.id in index:
                utt.words, utt.phones = read_textgrid(index[utt.id])
                utt.extra["alignment_extent"] = [str(index[utt.id]), textgrid_extent(index[utt.id])]
    return out


def textgrid_extent(path: str | Path) -> float:
    """The time a TextGrid spans (its ``xmax``): an aligner's output spans the whole recording."""
    import textgrid

    return float(textgrid.TextGrid.fromFile(str(path)).maxTime)


def _tier(tg, name: str):
    for tier in tg.tiers:
        tname = (tier.name or "").lower()
        if tname == name or tname.endswith(f" - {name}"):
            return tier
    return None


def read_textgrid(path: str | Path) -> tuple[list[Segment], list[Segment]]:
    """Word and phone segments of a TextGrid with ``words`` and ``phones`` tiers (MFA layout).

    Empty intervals (MFA's silences) are skipped for words and written as ``sil`` for phones;
    phone labels lose their stress digits (``AH0`` → ``AH``).
    """
    import textgrid

    from ..text import SILENCE, strip_stress

    path = Path(path)
    try:
        tg = textgrid.TextGrid.fromFile(str(path))
    except Exception as e:  # the library raises several types for bad files
        raise InputError(path, f"not a readable TextGrid ({e})") from None
    words_t, phones_t = _tier(tg, "words"), _tier(tg, "phones")
    if words_t is None or phones_t is None:
        names = [t.name for t in tg.tiers]
        raise InputError(path, f"needs 'words' and 'phones' tiers, found {names}")
    words = [Segment(float(iv.minTime), float(iv.maxTime), iv.mark.strip().lower())
             for iv in words_t if iv.mark.strip() and iv.mark.strip() not in ("<eps>", "sil", "sp")]
    phones = []
    for iv in phones_t:
        mark = iv.mark.strip()
        label = SILENCE if mark in ("", "sil", "sp", "spn", "<eps>") else strip_stress(mark.upper())
        phones.append(Segment(float(iv.minTime), float(iv.maxTime), label))
    return words, phones
