"""Accented English from festival's non-English diphone voices (Italian, Czech, Finnish).

Debian packages only three English festival/flite speakers for training, too few for a recognizer
to generalize to unseen voices. The foreign-language diphone voices add seven more speakers: the
English front end (kal_diphone's lexicon, phrasing, durations and intonation) builds the utterance,
each English phone is renamed to the nearest phone of the foreign voice (a diphthong becomes two
phones splitting its duration), and the foreign voice's UniSyn back end renders it. The result
is English as a speaker of that language would say it, with the English phone timings exact
(the back end follows the segment end times).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ...errors import InputError

# English radio phones → phones of each foreign phone set (tuples: one or two phones).
_VOWELS_SHARED = {"ah": ("a",), "ax": ("e",), "aw": ("a", "u"), "er": ("e", "r"), "axr": ("e", "r"),
                  "ih": ("i",), "ix": ("i",), "uh": ("u",), "eh": ("e",)}
_CONSONANTS_SHARED = {"b": ("b",), "d": ("d",), "dh": ("d",), "dx": ("d",), "f": ("f",), "g": ("g",),
                      "k": ("k",), "l": ("l",), "m": ("m",), "n": ("n",), "nx": ("n",), "p": ("p",),
                      "r": ("r",), "s": ("s",), "t": ("t",), "th": ("t",), "v": ("v",),
                      "el": ("e", "l"), "em": ("e", "m"), "en": ("e", "n")}
_PAUSES = ("pau", "h#", "brth")

ITALIAN = {**_VOWELS_SHARED, **_CONSONANTS_SHARED,
           "aa": ("a",), "ae": ("E",), "ao": ("O",), "ay": ("a", "i"), "eh": ("E",), "ey": ("e", "i"),
           "iy": ("i",), "ow": ("o", "u"), "oy": ("O", "i"), "uw": ("u",), "ux": ("u",),
           "ch": ("tS",), "hh": ("#",), "hv": ("#",), "jh": ("dZ",), "ng": ("ng",), "sh": ("S",),
           "w": ("w",), "y": ("j",), "z": ("z",), "zh": ("Z",), **{p: ("#",) for p in _PAUSES}}
CZECH = {**_VOWELS_SHARED, **_CONSONANTS_SHARED,
         "aa": ("a:",), "ae": ("e",), "ao": ("o:",), "ay": ("a", "j"), "ey": ("e", "j"), "iy": ("i:",),
         "ow": ("o", "u"), "oy": ("o", "j"), "uw": ("u:",), "ux": ("u:",), "ch": ("c~",), "hh": ("h",),
         "hv": ("h",), "jh": ("dz~",), "ng": ("n",), "sh": ("s~",), "w": ("v",), "y": ("j",), "z": ("z",),
         "zh": ("z~",), **{p: ("#",) for p in _PAUSES}}
FINNISH = {**_VOWELS_SHARED, **_CONSONANTS_SHARED,
           "aa": ("a:",), "ae": ("a",), "ao": ("o:",), "ay": ("a", "i"), "ey": ("e", "i"), "iy": ("i:",),
           "ow": ("o", "u"), "oy": ("o", "i"), "uw": ("u:",), "ux": ("u:",), "ch": ("t", "S"), "hh": ("h",),
           "hv": ("h",), "jh": ("d", "j"), "ng": ("N",), "sh": ("S",), "th": ("T",), "w": ("w",), "y": ("j",),
           "z": ("s",), "zh": ("S",), **{p: ("#",) for p in _PAUSES}}

# voice → (phone map, f0 range in Hz of the English intonation targets)
ACCENTED_VOICES: dict[str, tuple[dict[str, tuple[str, ...]], tuple[int, int]]] = {
    "lp_diphone": (ITALIAN, (170, 240)),
    "pc_diphone": (ITALIAN, (85, 140)),
    "czech_dita": (CZECH, (170, 240)),
    "czech_machac": (CZECH, (85, 140)),
    "czech_ph": (CZECH, (85, 140)),
    "suo_fi_lj_diphone": (FINNISH, (170, 240)),
    "hy_fi_mv_diphone": (FINNISH, (85, 140)),
}
DEBIAN_PACKAGES = ("festvox-italp16k", "festvox-itapc16k", "festvox-czech-dita", "festvox-czech-machac",
                   "festvox-czech-ph", "festvox-suopuhe-lj", "festvox-suopuhe-mv")

# Scheme: the English front end without waveform synthesis, and the renaming of segments.
SCHEME_HELPERS = """
(define (english_front text)
  (let ((utt (eval (list 'Utterance 'Text text))))
    (Initialize utt) (Text utt) (Token_POS utt) (Token utt) (POS utt) (Phrasify utt) (Word utt)
    (Pauses utt) (Intonation utt) (PostLex utt) (Duration utt) (Int_Targets utt) utt))
(define (remap_segments utt table)
  (mapcar
   (lambda (s)
     (let ((to (cdr (assoc_string (item.name s) table))) (end (item.feat s "end")))
       (item.set_name s (car to))
       (if (cdr to)
           (let ((start (item.feat s "segment_start")))
             (item.set_feat s "end" (/ (+ start end) 2))
             (item.insert s (list (cadr to) (list (list 'end end))) 'after)))))
   (utt.relation.items utt 'Segment))
  utt)
"""


def scheme_table(table: dict[str, tuple[str, ...]]) -> str:
    """The phone map as a Scheme association list ``((name "to" ...) ...)``."""
    return "'(" + " ".join(f"({k} " + " ".join(f'"{p}"' for p in v) + ")" for k, v in sorted(table.items())) + ")"


def check_installed() -> None:
    """Raise a clear error when festival lacks one of the accented voices."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "voices.scm"
        script.write_text('(format t "VOICES %l\\n" (voice.list))\n')
        try:
            res = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
        except FileNotFoundError:
            raise InputError("festival", "festival is not installed (Debian package festival)") from None
    line = next((x for x in res.stdout.splitlines() if x.startswith("VOICES ")), "VOICES ()")
    have = set(line[len("VOICES "):].strip("()").split())
    missing = [v for v in ACCENTED_VOICES if v not in have]
    if missing:
        raise InputError("festival", f"accented voices {missing} are not installed; install the Debian "
                                     f"packages {' '.join(DEBIAN_PACKAGES)}")
