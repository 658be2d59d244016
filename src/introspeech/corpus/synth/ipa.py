"""espeak-ng IPA with sample durations → ARPAbet phone and word segments.

Both neural back ends (Piper and Kokoro) speak phonemes that espeak-ng wrote in IPA, one symbol
per model token, and report how many samples each token lasted. This module reads such a list
into a `Rendered` utterance: diphthongs and affricates are two IPA symbols (``e ɪ`` → EY,
``t ʃ`` → CH), stress and length marks belong to the phone they follow, a space starts the next
word, punctuation is a pause. A sentence whose words the synthesizer runs together is divided
by the CMUdict segmentation the other back ends use.
"""

from __future__ import annotations

import numpy as np

from ...audio import SAMPLE_RATE, resample
from .base import Rendered, assign_words, build_segments

# espeak-ng's English IPA → ARPAbet; ("",) marks a modifier of the previous phone, () a pause.
# Keys of two symbols are matched before single symbols.
IPA_TABLE: dict[str, tuple[str, ...]] = {
    "eɪ": ("EY",), "aɪ": ("AY",), "aʊ": ("AW",), "oʊ": ("OW",), "ɔɪ": ("OY",), "əʊ": ("OW",),
    "tʃ": ("CH",), "dʒ": ("JH",), "ɜː": ("ER",), "iə": ("IY", "AH"), "ɪə": ("IH", "AH"),
    "i": ("IY",), "ɪ": ("IH",), "ᵻ": ("IH",), "e": ("EH",), "ɛ": ("EH",), "æ": ("AE",), "a": ("AE",),
    "ɑ": ("AA",), "ɒ": ("AA",), "ɔ": ("AO",), "o": ("OW",), "ʊ": ("UH",), "u": ("UW",), "ʌ": ("AH",),
    "ə": ("AH",), "ɐ": ("AH",), "ɚ": ("ER",), "ɜ": ("ER",), "ᵊ": ("AH",),
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",), "g": ("G",),
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",), "ʃ": ("SH",),
    "ʒ": ("ZH",), "h": ("HH",), "m": ("M",), "n": ("N",), "ŋ": ("NG",), "l": ("L",), "ɹ": ("R",),
    "r": ("R",), "w": ("W",), "j": ("Y",), "ɾ": ("T",), "ʔ": ("T",), "x": ("HH",), "ç": ("HH",),
    "ɬ": ("L",), "ʍ": ("W",), "ʧ": ("CH",), "ʤ": ("JH",),
    "ˈ": ("",), "ˌ": ("",), "ː": ("",), "ˑ": ("",), "̩": ("",), "̃": ("",), "ʲ": ("",), "ʰ": ("",), "ʷ": ("",),
    " ": (), ",": (), ".": (), "!": (), "?": (), ";": (), ":": (), "^": (), "$": (), "_": (), "—": (),
    "…": (), '"': (), "“": (), "”": (), "(": (), ")": (),
}


def ipa_events(alignments: list[tuple[str, int]], sample_rate: int) -> list[tuple[float, str, int]]:
    """``(start_s, ipa_token, word_index or -1)`` from a ``(phoneme, samples)`` list.

    Two-symbol tokens are joined when both halves are consecutive; the word index counts the
    spaces seen so far (``-1`` for pauses). A space right after a spoken phone is the transition
    into the next word, not a pause: its samples go to that phone."""
    alignments = list(alignments)
    for k in range(1, len(alignments)):
        (prev, n_prev), (sym, n) = alignments[k - 1], alignments[k]
        if sym == " " and IPA_TABLE.get(prev, ()) != ():
            alignments[k - 1], alignments[k] = (prev, n_prev + n), (sym, 0)
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


def render_ipa(raw: np.ndarray, sample_rate: int, alignments: list[tuple[str, int]], text: str,
               synth: str) -> Rendered:
    """A `Rendered` utterance at 16 kHz from audio at ``sample_rate`` and its IPA token durations."""
    events = ipa_events(alignments, sample_rate)
    words = text.split()
    n_groups = 1 + max((w for _, _, w in events), default=-1)
    names = [name for _, name, _ in events]
    if n_groups == len(words):
        ranges = [(w, w + 1) if w >= 0 else None for _, _, w in events]
    else:  # the synthesizer joined or split words: divide the phones by the dictionary
        ranges = [(0, len(words)) if w >= 0 else None for _, _, w in events]
    owner = assign_words(names, IPA_TABLE, ranges, words)
    wave = resample(raw, sample_rate, SAMPLE_RATE)
    duration = len(wave) / SAMPLE_RATE
    phones, spans, raw_names = build_segments([(t, n, o) for (t, n, _), o in zip(events, owner)],
                                              IPA_TABLE, synth, duration, words)
    return Rendered(wave, spans, phones, raw_names)
