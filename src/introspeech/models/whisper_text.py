"""Whisper's transcript as decoder tokens, and the words each token spells.

The words are joined by spaces after a leading space (as Whisper writes a transcript), tokenized
by openai-whisper's English tokenizer after its start-of-transcript and no-timestamps tokens;
the decoder's row ``i`` scores the token after the first ``i + 1``. A token belongs to every word
whose characters it overlaps (a word may take several tokens; a token may join a space and a
word). One definition for every analysis that scores Whisper's tokens (ablations, explanations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TranscriptTokens:
    """A transcript teacher-forced: the decoder's input, the text tokens and where each is scored."""

    tokens: torch.Tensor  # (1, prefix + n): the decoder's input
    ids: np.ndarray  # (n,) the text tokens
    rows: np.ndarray  # (n,) the decoder row that scores each text token
    words: list[tuple[int, ...]]  # per text token: the indices of the words it spells


def transcript_words(utt) -> tuple[list, list[str]]:
    """An utterance's timed words (silences and empty labels left out) and the words to spell: the
    timed ones, else its normalized text's."""
    from ..text import SILENCE, normalize_text

    words = [w for w in (utt.words or []) if w.label.strip() and w.label != SILENCE]
    return words, [w.label.strip() for w in words] or normalize_text(utt.text).text.split()


def english_tokenizer():
    """openai-whisper's tokenizer of the English-only models."""
    import whisper.tokenizer

    return whisper.tokenizer.get_tokenizer(multilingual=False)


def transcript_tokens(words: list[str], tokenizer) -> TranscriptTokens:
    """The tokens of ``words`` (see the module docstring); a ValueError when there is no word or the
    tokens do not spell the text back."""
    if not words:
        raise ValueError("no transcript to teacher-force")
    text = " " + " ".join(words)
    ids = tokenizer.encode(text)
    prefix = list(tokenizer.sot_sequence_including_notimestamps)
    spans, pos = [], 0
    for w in words:
        pos = text.index(w, pos)
        spans.append((pos, pos + len(w)))
        pos += len(w)
    owners, at = [], 0
    for tok in ids:
        a, b = at, at + len(tokenizer.decode([tok]))
        at = b
        owners.append(tuple(j for j, (ws, we) in enumerate(spans) if ws < b and we > a))
    if at != len(text):
        raise ValueError("the tokens do not spell the transcript")
    rows = np.arange(len(prefix) - 1, len(prefix) - 1 + len(ids), dtype=np.int64)
    return TranscriptTokens(torch.tensor([prefix + ids], dtype=torch.long), np.asarray(ids, dtype=np.int64), rows,
                            owners)
