"""What an ablation is measured on: each utterance's aligned output frames, their symbols, and the
letter and phoneme group each belongs to.

For a CTC model the reference transcript is forced-aligned to the model's scores (the Viterbi
path over log-probabilities, `asr.decode.forced_align_arrays`; a phoneme recognizer's reference is
the corpus' phones in its IPA tokens, as `explanations.run.phoneme_units` builds it); each
emitted symbol is measured at the frame of its run where its log-posterior is highest. The
letter group of an entry is its symbol's (a spelling model only); its phoneme group is the corpus
phone whose span holds the frame's centre (`profiles.labels.phone_index`, silence included), when
the corpus has phone timings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..asr.decode import forced_align_arrays
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..models.description import ModelDescription
from ..profiles.labels import phone_index
from ..profiles.settings import Layout
from ..text import normalize_text


@dataclass
class Targets:
    """One utterance: its input and the entries an effect is measured on (all arrays ``(n,)``)."""

    utterance: str
    x: torch.Tensor  # (1, features, time)
    frame: np.ndarray  # output frame
    symbol: np.ndarray  # output index whose log-posterior is measured
    letter: np.ndarray  # letter group (-1: none)
    phoneme: np.ndarray  # phoneme group (-1: none)

    def group(self, kind: str) -> np.ndarray:
        return self.letter if kind == "letters" else self.phoneme


def utterance_targets(desc: ModelDescription, layout: Layout, utt: Utterance, feats: np.ndarray) -> Targets:
    """The aligned entries of one utterance (see the module docstring); a transcript the output
    cannot spell, or an alignment longer than the frames allow, is an `InputError` naming it."""
    out = desc.output
    if out.kind != "ctc":
        raise InputError("--model", f"{desc.name}'s output is {out.kind!r}: ablation effects are measured on a CTC "
                                    "output's aligned symbols")
    x = torch.as_tensor(feats, dtype=next(desc.module.parameters()).dtype).unsqueeze(0)
    with torch.no_grad():
        lp = desc.module(x)[0].double().log_softmax(0)
    try:
        if out.spaced:  # a phoneme recognizer: its own tokens for the corpus' phones
            from ..explanations.run import phoneme_units

            units = phoneme_units(desc, lp, utt, desc.features.frame_rate)
            frame = np.array([u.frame for u in units], dtype=np.int64)
            symbol = np.array([u.symbol for u in units], dtype=np.int64)
        else:
            sym, first, last = forced_align_arrays(lp.numpy(), out.encode(normalize_text(utt.text).text), out.blank)
            symbol = np.asarray(sym, dtype=np.int64)
            frame = np.array([int(a + lp[int(s), a:b + 1].argmax()) for s, a, b in zip(sym, first, last)], dtype=np.int64)
    except ValueError as e:
        raise InputError(utt.audio_path or utt.id, f"utterance {utt.id}: {e}") from None
    letter = layout.letter_groups(symbol) if not out.spaced else np.full(len(symbol), -1, dtype=np.int64)
    phoneme = np.full(len(symbol), -1, dtype=np.int64)
    if utt.phones:
        seconds = np.array([desc.output_geometry.centre(int(t)) for t in frame]) / desc.features.frame_rate
        for p in utt.phones:
            inside = (seconds >= p.start) & (seconds < p.end)
            phoneme[inside] = phone_index(p.label)
    return Targets(utt.id, x, frame, symbol, letter, phoneme)
