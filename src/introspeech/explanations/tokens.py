"""Whisper's tokens as the units the explanation table explains.

Each utterance's transcript (its corpus words) is teacher-forced (`models.whisper_text`); every text
token is a unit, explained over the log-Mel frames of speech (`models.whisper_frontend.SpeechTokens`:
LRP needs the log-Mel, the front end's floor has no relevance rule; the padding to 30 s is held
fixed) at the decoder row that scores it. A token has no phone of its own: its word span is that of
the words it spells (10 ms frames), and the shift is measured from the word span's centre.
"""

from __future__ import annotations

import torch

from ..corpus.utterance import Utterance
from ..models.description import ModelDescription
from ..models.whisper_frontend import WhisperEncoder, WhisperTokens, speech_tokens, teacher_forced
from ..models.whisper_text import english_tokenizer, transcript_tokens, transcript_words
from .units import Letter, frame_span, spaced

MEL_RATE = 100.0  # log-Mel frames per second


def explains_tokens(desc: ModelDescription) -> bool:
    """Whether ``desc`` is Whisper's encoder, explained on its decoder's tokens."""
    return isinstance(desc.module, WhisperEncoder)


class TokenUnits:
    """Builds each utterance's token model, input and units; the decoder is read once."""

    def __init__(self, desc: ModelDescription):
        self.scorer: WhisperTokens = teacher_forced(desc.module)
        self.tokenizer = english_tokenizer()

    def __call__(self, utt: Utterance, x: torch.Tensor, limit: int = 0):
        """``(model, log-Mel frames of speech, units)`` of one utterance; ``x`` its waveform ``(1, 1, samples)``."""
        words, spelt = transcript_words(utt)
        tt = transcript_tokens(spelt, self.tokenizer)
        model, mel = speech_tokens(self.scorer, x, tt.tokens)
        units = []
        for tok, row, owners in zip(tt.ids, tt.rows, tt.words):
            span = frame_span(words[owners[0]].start, words[owners[-1]].end, MEL_RATE) if words and owners else None
            units.append(Letter(utt.id, int(tok), int(row), None, span))
        return model, mel, spaced(units, limit)
