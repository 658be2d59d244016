"""What an ablation is measured on: each utterance's aligned output frames, their symbols, and the
letter and phoneme group each belongs to.

For a CTC model the reference transcript is forced-aligned to the model's scores (the Viterbi
path over log-probabilities, `asr.decode.forced_align_arrays`; a phoneme recognizer's reference is
the corpus' phones in its IPA tokens, as `explanations.run.phoneme_units` builds it); each
emitted symbol is measured at the frame of its run where its log-posterior is highest. The
letter group of an entry is its symbol's (a spelling model only); its phoneme group is the corpus
phone whose span holds the frame's centre (`profiles.labels.phone_index`, silence included), when
the corpus has phone timings.

A sequence-to-sequence model (Whisper) is measured on its transcript's tokens, the decoder
teacher-forced (`whisper_targets`): an entry is a token position, its phoneme groups are every
corpus phone inside the words the token spells (a token may belong to several groups).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..asr.decode import forced_align_arrays
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..models.description import ModelDescription
from ..models.whisper_text import english_tokenizer, transcript_tokens, transcript_words
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
    sets: dict[str, list[frozenset[int]]] | None = None  # several groups per entry (tokens), by kind
    scorer: nn.Module | None = None  # scores (batch, positions, classes) from (x, *args); None: the model's own
    args: tuple = ()
    speech_samples: int | None = None  # a model that pads (Whisper): only frames of speech are ablated

    def group(self, kind: str) -> np.ndarray:
        """Each entry's one group of ``kind`` (-1: none); entries with several groups have no single one."""
        if self.sets is not None:
            raise ValueError(f"utterance {self.utterance}: entries belong to several {kind} groups; use member()")
        return self.letter if kind == "letters" else self.phoneme

    def member(self, kind: str, g: int) -> np.ndarray:
        """Whether each entry belongs to group ``g`` of ``kind``."""
        if self.sets is not None:
            return np.array([g in s for s in self.sets.get(kind, [frozenset()] * len(self.symbol))], dtype=bool)
        return self.group(kind) == g

    def labelled(self, kind: str) -> np.ndarray:
        """Whether each entry belongs to some group of ``kind``."""
        if self.sets is not None:
            return np.array([bool(s) for s in self.sets.get(kind, [frozenset()] * len(self.symbol))], dtype=bool)
        return self.group(kind) >= 0

    def counts(self, kind: str, n: int) -> np.ndarray:
        """Entries per group of ``kind`` ``(n,)``."""
        if self.sets is not None:
            c = np.zeros(n, dtype=np.int64)
            for s in self.sets.get(kind, []):
                for g in s:
                    c[g] += 1
            return c
        lab = self.group(kind)
        return np.bincount(lab[lab >= 0], minlength=n)[:n]

    def log_probs(self, model: nn.Module, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Log-posteriors ``(batch, classes, positions)`` of copies of the input (``batch`` of them:
        ``x`` may be one copy that an edited layer turns into ``batch``)."""
        if self.scorer is None:
            return model(x).double().log_softmax(1)
        args = [a.expand(batch or len(x), *a.shape[1:]) for a in self.args]
        return self.scorer(x, *args).double().log_softmax(-1).transpose(1, 2)

    def picked(self, model: nn.Module, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """The measured entries' log-posteriors ``(batch, entries)``."""
        return self.log_probs(model, x, batch)[:, self.symbol, self.frame]


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


def whisper_targets(desc: ModelDescription, layout: Layout, utt: Utterance, feats: np.ndarray,
                    scorer: nn.Module, tokenizer) -> Targets:
    """Whisper's entries (see the module docstring): the transcript spelt by the corpus' words
    (``utt.words``, else its text), tokenized after Whisper's start-of-transcript and
    no-timestamps tokens; entry i is the decoder's score of text token i given the ones before."""
    words, spelt = transcript_words(utt)
    try:
        tt = transcript_tokens(spelt, tokenizer)
    except ValueError as e:
        raise InputError(utt.audio_path or utt.id, f"utterance {utt.id}: {e}") from None
    sets: list[frozenset[int]] = []
    for owners in tt.words:
        groups: set[int] = set()
        for j in owners:
            if j < len(words) and utt.phones:
                w = words[j]
                groups |= {phone_index(p.label) for p in utt.phones
                           if w.start <= (p.start + p.end) / 2 < w.end and phone_index(p.label) >= 0}
        sets.append(frozenset(groups))
    x = torch.as_tensor(feats, dtype=next(desc.module.parameters()).dtype).unsqueeze(0)
    none = np.full(len(tt.ids), -1, dtype=np.int64)
    return Targets(utt.id, x, tt.rows, tt.ids, none, none.copy(),
                   sets={"phonemes": sets, "letters": [frozenset()] * len(tt.ids)}, scorer=scorer,
                   args=(tt.tokens,), speech_samples=int(x.shape[-1]))


def token_scorer(desc: ModelDescription) -> tuple[nn.Module, object] | None:
    """None for a CTC model (its own outputs are measured); for Whisper's encoder the decoder
    teacher-forced on top of that very encoder (edits of its layers reach the tokens) and its
    tokenizer; any other output is an `InputError` naming it."""
    if not check_measurable(desc):
        return None
    from ..models.whisper_frontend import teacher_forced

    return teacher_forced(desc.module), english_tokenizer()


def check_measurable(desc: ModelDescription) -> bool:
    """False for a CTC model, True for Whisper's encoder (measured on tokens); an `InputError`
    naming any other output."""
    if desc.output.kind == "ctc":
        return False
    from ..models.whisper_frontend import WhisperEncoder

    if isinstance(desc.module, WhisperEncoder):
        return True
    raise InputError("--model", f"{desc.name}'s output is {desc.output.kind!r}: ablation effects are measured on a "
                                "CTC output's aligned symbols or on Whisper's teacher-forced tokens")


def model_targets(desc: ModelDescription, layout: Layout, utt: Utterance, feats: np.ndarray,
                  scoring: tuple[nn.Module, object] | None) -> Targets:
    """`utterance_targets` for a CTC model, `whisper_targets` with ``scoring`` (`token_scorer`)."""
    if scoring is None:
        return utterance_targets(desc, layout, utt, feats)
    return whisper_targets(desc, layout, utt, feats, *scoring)
