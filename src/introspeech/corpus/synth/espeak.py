"""espeak-ng through libespeak-ng (ctypes), with sample-exact PHONEME and WORD events.

The library is initialized in synchronous mode with phoneme events on; the synthesis callback
collects audio and events. Word events carry the character position of the word in the text,
phoneme events the sample at which the phoneme starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
from pathlib import Path

import numpy as np

from ...audio import SAMPLE_RATE, resample
from .base import Rendered, Voice, assign_words, build_segments

ACCENTS: tuple[str, ...] = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
"""The eight English accents of espeak-ng (``en`` is British English; no MBROLA: non-free)."""

# espeak-ng English phoneme mnemonics → ARPAbet. () = silence, ("",) = modifier (no own segment).
ESPEAK_TABLE: dict[str, tuple[str, ...]] = {
    "_": (), "_:": (), "_!": (), "_|": (), "_^_": (), ";": ("",), "#": ("",),
    "p": ("P",), "b": ("B",), "t": ("T",), "t#": ("T",), "t2": ("T",), "t[": ("T",), "?": ("T",),
    "d": ("D",), "d#": ("D",), "k": ("K",), "g": ("G",), "x": ("K",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",),
    "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "tS": ("CH",), "dZ": ("JH",),
    "m": ("M",), "n": ("N",), "n-": ("N",), "N": ("NG",), "l": ("L",), "l/": ("L",), "l/2": ("L",),
    "r": ("R",), "r-": ("R",), "j": ("Y",), "w": ("W",), "w#": ("W",),
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@-": ("AH",), "@L": ("AH", "L"), "V": ("AH",),
    "a#": ("AH",), "VR": ("AH", "R"), "3": ("ER",), "3:": ("ER",), "3:r": ("ER",),
    "a": ("AE",), "aa": ("AE",), "A:": ("AA",), "A#": ("AA",), "0": ("AA",), "0#": ("AA",),
    "A@": ("AA", "R"), "O:": ("AO",), "O": ("AO",), "O2": ("AO",), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "E": ("EH",), "E2": ("EH",), "E3": ("EH",), "e": ("EH",),
    "e@": ("EH", "R"), "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "I2#": ("IH",),
    "IR": ("IH", "R"), "i": ("IY",), "i:": ("IY",), "i@": ("IH", "R"), "i@3": ("IY", "AH"),
    "U": ("UH",), "U@": ("UH", "R"), "u:": ("UW",), "u": ("UW",), "eI": ("EY",),
    "aI": ("AY",), "aI2": ("AY",), "aI3": ("AY",), "aI@": ("AY", "ER"), "aU": ("AW",),
    "aU@": ("AW", "ER"), "oU": ("OW",), "o": ("OW",), "OI": ("OY",),
    "A~": ("AA",), "O~": ("AO",), "E~": ("EH",), "a~": ("AE",),  # nasal vowels of loanwords
}

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_RATE, _PITCH, _RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _find_library() -> tuple[str, str | None]:
    """The libespeak-ng shared library and data path (system, else the PyPI espeakng-loader)."""
    name = ctypes.util.find_library("espeak-ng")
    if name:
        return name, None
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except ImportError:
        raise RuntimeError("libespeak-ng not found: install Debian's espeak-ng or PyPI's espeakng-loader") from None


def data_dir() -> Path:
    """The espeak-ng-data folder of the library in use."""
    lib, data = _find_library()
    if data:
        return Path(data)
    for cand in (Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data"), Path("/usr/lib/aarch64-linux-gnu/espeak-ng-data"),
                 Path("/usr/share/espeak-ng-data"), Path("/usr/lib/espeak-ng-data")):
        if cand.is_dir():
            return cand
    raise RuntimeError("espeak-ng-data folder not found")


def variants() -> list[str]:
    """Voice variant names from the data folder (unknown names would silently fall back)."""
    folder = data_dir() / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


class Espeak:
    """An in-process espeak-ng synthesizer (one per process: the library is global)."""

    def __init__(self) -> None:
        lib_path, data = _find_library()
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        path = data.encode() if data else None
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []
        self._cb = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)
        self._pid = os.getpid()

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            if e.type == _EV_PHONEME:
                self._events.append((_EV_PHONEME, e.sample, e.text_position,
                                     bytes(e.id.string).rstrip(b"\0").decode("ascii", "replace")))
            elif e.type == _EV_WORD:
                self._events.append((_EV_WORD, e.sample, e.text_position, ""))
            i += 1
        return 0

    def render(self, text: str, voice: Voice) -> Rendered:
        """Synthesize normalized text in a forked child, so every utterance starts from the same
        library state (libespeak-ng carries state from one utterance to the next, which made
        the audio depend on which utterances a worker had synthesized before)."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesize, send the result, exit without cleanup
            os.close(rfd)
            try:
                payload = pickle.dumps(self._render(text, voice))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                payload = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
            with os.fdopen(wfd, "wb") as f:
                f.write(payload)
            os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            payload = f.read()
        os.waitpid(pid, 0)
        result = pickle.loads(payload)  # our own child's output, never a user file
        if isinstance(result, Exception):
            raise result
        return result

    def _render(self, text: str, voice: Voice) -> Rendered:
        """Synthesize normalized text; phones/words from the library's own events."""
        name = voice.name
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak-ng voice {name!r} not found")
        self.lib.espeak_SetParameter(_RATE, int(voice.param("rate", 175)), 0)
        self.lib.espeak_SetParameter(_PITCH, int(voice.param("pitch", 50)), 0)
        self.lib.espeak_SetParameter(_RANGE, int(voice.param("range", 50)), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed for {text!r}")
        raw = np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks else np.zeros(0, np.float32)
        sr = self.sample_rate
        # character offset (1-based) of each word of the text → word index
        words = text.split()
        starts, pos = [], 0
        for w in words:
            pos = text.index(w, pos)
            starts.append(pos + 1)
            pos += len(w)
        # each WORD event opens a group of phones; a group may cover several words ("out of")
        # (after a voice change the library may add a stray WORD event at position 0: skip it)
        group_first: list[int] = []
        names, times, ranges, g = [], [], [], -1
        for kind, _, pos, _ in self._events:
            if kind == _EV_WORD and 1 <= pos <= len(text):
                first = max(i for i, s in enumerate(starts) if s <= pos) if pos >= starts[0] else 0
                if not group_first or first > group_first[-1]:
                    group_first.append(first)
        group_first.append(len(words))
        for kind, sample, pos, pname in self._events:
            if kind == _EV_WORD:
                if 1 <= pos <= len(text) and g + 1 < len(group_first) - 1:
                    first = max(i for i, s in enumerate(starts) if s <= pos) if pos >= starts[0] else 0
                    if first == group_first[g + 1]:
                        g += 1
                continue
            names.append(pname)
            times.append(sample / sr)
            ok = 0 <= g and group_first[g + 1] > group_first[g]
            ranges.append((group_first[g], group_first[g + 1]) if ok else None)
        owner = assign_words(names, ESPEAK_TABLE, ranges, words)
        events = list(zip(times, names, owner))
        wave = resample(raw, sr, SAMPLE_RATE)
        duration = len(wave) / SAMPLE_RATE
        phones, spans, raw_names = build_segments(events, ESPEAK_TABLE, "espeak", duration, words)
        return Rendered(wave, spans, phones, raw_names)
