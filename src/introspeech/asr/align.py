"""Letter-level forced alignment of reference transcripts, and its check against word timings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio import FeatureConfig
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance
from ..text import normalize_text
from .decode import LetterSpan, forced_align
from .evaluate import scores
from .model import Wav2Letter, geometry


@dataclass
class AlignedUtterance:
    utterance: Utterance
    text: str
    spans: list[LetterSpan]
    log_probs: torch.Tensor  # (n_symbols, frames)


def align_utterance(model: Wav2Letter, cfg: FeatureConfig, utt: Utterance) -> AlignedUtterance:
    """Forced alignment of the utterance's normalized transcript to the model's output frames."""
    text = normalize_text(utt.text).text
    lp = torch.log_softmax(scores(model, utterance_features(utt, cfg)).double(), dim=0)
    return AlignedUtterance(utt, text, forced_align(lp, text), lp)


def frame_time(model: Wav2Letter, cfg: FeatureConfig, frame: int) -> float:
    """Time (s) of an output frame: the centre of its receptive field."""
    return geometry(model.config)["output"].centre(frame) / cfg.frame_rate


def word_onset_errors(model: Wav2Letter, cfg: FeatureConfig, aligned: AlignedUtterance) -> list[float]:
    """Aligned onset − true onset (s, signed) of every word: the onset is the first frame of the
    word's first letter in the forced alignment, compared with the corpus' word start."""
    words = aligned.utterance.words or []
    if [w.label for w in words] != aligned.text.split():
        return []
    errors, k = [], 0
    for w in words:
        first = aligned.spans[k]
        errors.append(frame_time(model, cfg, first.start) - w.start)
        k += len(w.label) + 1  # the word's letters and the following space
    return errors


def onset_summary(errors: list[float], tolerance: float = 0.05, delay: float = 0.0) -> dict:
    """Share of |error − delay| within ``tolerance``, median and 90th percentile (ms)."""
    e = np.abs(np.asarray(errors) - delay)
    return {"words": int(e.size), "within_50ms": float((e <= tolerance).mean()) if e.size else float("nan"),
            "median_ms": float(np.median(e) * 1000) if e.size else float("nan"),
            "p90_ms": float(np.percentile(e, 90) * 1000) if e.size else float("nan")}
