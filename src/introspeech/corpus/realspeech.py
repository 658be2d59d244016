"""`introspeech realspeech`: a test-only corpus of real human English speech from Debian packages.

Sources (each one split; none is ever trained on, ``corpus.json`` says ``"test_only": true``):

- ``asterisk_g722``: Asterisk's core prompts (``asterisk-core-sounds-en-g722``, 16 kHz G.722,
  decoded with PyAV), one professional US female speaker, CC-BY-SA-3.0; transcripts from
  ``core-sounds-en.txt.gz``;
- ``asterisk_8k``: the same prompts as 8 kHz WAV (``asterisk-core-sounds-en-wav``), upsampled;
- ``pocketsphinx``: ``pocketsphinx-testdata``'s LibriVox excerpts, "cards" utterances and
  ``goforward.raw`` with their transcripts (BSD);
- ``alsa``: ``alsa-utils``' channel-test voices, transcribed by their file names (GPL).

Transcripts are normalized to the alphabet: numbers spelled as spoken (``num2words``), ``*`` and
``#`` read as "star" and "pound", bracketed non-speech prompts dropped, known typos corrected;
every change is kept in the utterance's ``normalization`` list. Word and phone timings come from
a forced aligner (`forced_alignment`) and are marked ``"alignment": "forced"``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import PRESETS, SAMPLE_RATE, FeatureConfig, load_audio, log_mel, resample
from ..text import normalize_text
from .manifest import utterance_to_json
from .utterance import Utterance

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")

# Source → (Debian packages, licence, speakers); what `introspeech realspeech` reports per split.
SOURCES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "asterisk_g722": (("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"), "CC-BY-SA-3.0",
                      "1 (Allison Smith, US female)"),
    "asterisk_8k": (("asterisk-core-sounds-en", "asterisk-core-sounds-en-wav"), "CC-BY-SA-3.0",
                    "1 (Allison Smith, US female)"),
    "pocketsphinx": (("pocketsphinx-testdata",), "BSD-2-Clause", "at least 4"),
    "alsa": (("alsa-utils",), "GPL-2+", "1"),
}

# Typos of the Asterisk transcript file, checked against the recordings.
CORRECTIONS = {"exclaimation": "exclamation", "fourtieth": "fortieth", "umute": "unmute", "decending": "descending"}
SYMBOL_WORDS = {"*": " star ", "#": " pound ", "&": " and ", "%": " percent ", "+": " plus ", "@": " at "}


@dataclass
class Clip:
    """One recording before normalization: where it is, how to read it, what is said."""

    id: str
    split: str
    path: Path
    text: str
    speaker: str
    reader: Callable[[Path], np.ndarray] | None = None  # None: any format load_audio reads

    def wave(self) -> np.ndarray:
        """The recording at 16 kHz."""
        return self.reader(self.path) if self.reader else load_audio(self.path, SAMPLE_RATE)


@dataclass
class Normalization:
    text: str
    changes: list[str] = field(default_factory=list)


def normalize_spoken(text: str) -> Normalization:
    """Real-speech transcript → alphabet: brackets dropped, typos fixed, numbers and symbols spelled."""
    changes: list[str] = []
    t = text
    brackets = re.findall(r"\[[^\]]*\]", t)
    stripped = re.sub(r"\[[^\]]*\]", " ", t)
    if brackets:
        changes.append(f"dropped bracketed {brackets}")
        t = stripped
    for wrong, right in CORRECTIONS.items():
        if re.search(rf"\b{wrong}\b", t, flags=re.I):
            t = re.sub(rf"\b{wrong}\b", right, t, flags=re.I)
            changes.append(f"typo {wrong} -> {right}")

    def number(m: re.Match) -> str:
        from num2words import num2words

        n, suffix = int(m.group(1)), m.group(2) or ""
        words = num2words(n, to="ordinal") if suffix.lower() in ("st", "nd", "rd", "th") else num2words(n)
        changes.append(f"{m.group(0)} -> {words}")
        return f" {words} {suffix if suffix.lower() not in ('st', 'nd', 'rd', 'th') else ''} "

    t = re.sub(r"(\d+)(st|nd|rd|th|[a-zA-Z]*)", number, t)
    for sym, word in SYMBOL_WORDS.items():
        if sym in t:
            changes.append(f"{sym} -> {word.strip()}")
            t = t.replace(sym, word)
    norm = normalize_text(t)
    if norm.dropped:
        changes.append(f"dropped characters {sorted(set(norm.dropped))}")
    return Normalization(norm.text, changes)


def _g722(path: Path) -> np.ndarray:
    import av

    with av.open(str(path), format="g722") as f:
        stream = f.streams.audio[0]
        frames = list(f.decode(stream))
        rate = stream.rate
    if not frames:
        raise ValueError(f"{path}: no G.722 audio")
    integer = frames[0].format.name.startswith("s16")  # PyAV's decoder gives 16-bit samples
    wave = np.concatenate([fr.to_ndarray().reshape(-1) for fr in frames]).astype(np.float32)
    wave = wave / 32768.0 if integer else wave
    return resample(wave, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wave


def _raw16k(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0


def asterisk_transcripts() -> dict[str, str]:
    """Prompt name (``digits/1``) → transcript, from the package's documentation."""
    out = {}
    with gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            out[name.strip()] = text.strip()
    return out


def clips() -> tuple[list[Clip], dict[str, str]]:
    """Every clip of the installed sources, and why each absent source is absent."""
    found: list[Clip] = []
    missing: dict[str, str] = {}
    if ASTERISK_TEXT.is_file() and ASTERISK_SOUNDS.is_dir():
        texts = asterisk_transcripts()
        for split, ext, reader in (("asterisk_g722", ".g722", _g722), ("asterisk_8k", ".wav", None)):
            files = {p.relative_to(ASTERISK_SOUNDS).with_suffix("").as_posix(): p for p in ASTERISK_SOUNDS.rglob(f"*{ext}")}
            if not files:
                missing[split] = f"no {ext} prompts under {ASTERISK_SOUNDS}"
            for name in sorted(set(files) & set(texts)):
                found.append(Clip(f"{split}-{name.replace('/', '_')}", split, files[name], texts[name], "asterisk:allison",
                                  reader))
    else:
        missing["asterisk_g722"] = missing["asterisk_8k"] = "asterisk-core-sounds-en is not installed"
    if POCKETSPHINX.is_dir():
        for folder, listing, speaker in (("librivox", "transcription", "librivox:austen"),
                                         ("cards", "cards.transcription", "pocketsphinx:cards")):
            for line in (POCKETSPHINX / folder / listing).read_text().splitlines():
                m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())  # Sphinx transcripts: <s> TEXT </s> (ID)
                if m:
                    found.append(Clip(f"pocketsphinx-{folder}-{m.group(2)[-4:]}", "pocketsphinx",
                                      POCKETSPHINX / folder / f"{m.group(2)}.wav", m.group(1), speaker))
        found.append(Clip("pocketsphinx-goforward", "pocketsphinx", POCKETSPHINX / "goforward.raw",
                          "go forward ten meters", "pocketsphinx:goforward", _raw16k))
    else:
        missing["pocketsphinx"] = "pocketsphinx-testdata is not installed"
    voices = sorted(p for p in ALSA_SOUNDS.glob("*.wav") if p.stem != "Noise") if ALSA_SOUNDS.is_dir() else []
    for p in voices:
        found.append(Clip(f"alsa-{p.stem.lower()}", "alsa", p, p.stem.replace("_", " "), "alsa:voice"))
    if not voices:
        missing["alsa"] = "alsa-utils is not installed"
    return found, missing


def install_hint() -> str:
    pkgs = sorted({p for pk, _, _ in SOURCES.values() for p in pk})
    return "apt-get install " + " ".join(pkgs) + " (or: make system)"


def build(out: str | Path, features: FeatureConfig = PRESETS["default"], align: bool = True,
          progress: Callable[[int, int], None] | None = None, splits: tuple[str, ...] | None = None,
          per_split: int = 0) -> dict:
    """Write the real-speech corpus to ``out``; returns its summary (also ``corpus.json``).
    ``splits``: only these sources; ``per_split``: at most this many evenly spaced clips of each
    (a quick subset, as the demo takes)."""
    import soundfile as sf

    from .forced_alignment import Aligner

    out = Path(out)
    found, missing = clips()
    if splits is not None:
        found = [c for c in found if c.split in splits]
    if per_split:
        by: dict[str, list[Clip]] = {}
        for c in found:
            by.setdefault(c.split, []).append(c)
        found = [cs[int(i)] for cs in by.values()
                 for i in np.unique(np.linspace(0, len(cs) - 1, min(per_split, len(cs))).astype(int))]
    if not found:
        raise FileNotFoundError(f"no real-speech package is installed; {install_hint()}")
    aligner = Aligner() if align else None
    (out / "features").mkdir(parents=True, exist_ok=True)
    (out / "features" / "config.json").write_text(json.dumps(features.to_dict(), indent=1))
    by_split: dict[str, list[dict]] = {}
    dropped: list[dict] = []
    unaligned: list[dict] = []
    for k, clip in enumerate(found):
        if progress:
            progress(k, len(found))
        norm = normalize_spoken(clip.text)
        if not norm.text:
            dropped.append({"id": clip.id, "text": clip.text, "why": "no speech words left (" + "; ".join(norm.changes) + ")"})
            continue
        try:
            wave = clip.wave()
        except Exception as e:  # noqa: BLE001 - a package file we cannot read is listed, not fatal
            dropped.append({"id": clip.id, "text": clip.text, "why": f"unreadable {clip.path}: {e}"})
            continue
        (out / "audio" / clip.split).mkdir(parents=True, exist_ok=True)
        (out / "features" / clip.split).mkdir(parents=True, exist_ok=True)
        audio = out / "audio" / clip.split / f"{clip.id}.flac"
        sf.write(str(audio), np.clip(wave, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        np.save(out / "features" / clip.split / f"{clip.id}.npy", log_mel(wave, features).astype(np.float16))
        words = phones = None
        extra: dict = {"source": str(clip.path), "transcript": clip.text, "normalization": norm.changes,
                       "split": clip.split}
        if aligner is not None:
            try:
                words, phones = aligner.align(wave, norm.text)
                extra["alignment"] = "forced"
            except ValueError as e:
                unaligned.append({"id": clip.id, "why": str(e)})
        utt = Utterance(clip.id, audio, norm.text, clip.speaker, len(wave) / SAMPLE_RATE, words, phones, extra=extra)
        by_split.setdefault(clip.split, []).append(utterance_to_json(utt, out))
    for split, recs in by_split.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    summary = {
        "test_only": True,
        "source": {"command": "introspeech realspeech", "packages": {s: list(SOURCES[s][0]) for s in by_split}},
        "splits": {s: {"utterances": len(r), "minutes": round(sum(x["duration"] for x in r) / 60, 2),
                       "speakers": SOURCES[s][2], "licence": SOURCES[s][1],
                       "aligned": sum(1 for x in r if x.get("alignment") == "forced")} for s, r in by_split.items()},
        "missing": missing, "dropped": dropped, "unaligned": unaligned,
        "changed": sum(1 for r in by_split.values() for x in r if x["normalization"]),
        "features": features.to_dict(),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1))
    return summary

