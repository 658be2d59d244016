"""A model's scores in the layout every analysis reads: ``(batch, classes)`` or
``(batch, classes, frames)``.

Transformers give frames first (``(batch, frames, classes)``), Hugging Face models return a
``ModelOutput`` whose ``logits`` hold the scores, and a sequence-to-sequence model needs its decoder
input. `Scores` wraps such a model (without changing it) so that it takes one input tensor and
returns scores in introspeech's layout; its layers keep their names under ``model.``.

>>> scores = Scores(wav2vec2, time_axis=1)                        # CTC logits (B, T, V) -> (B, V, T)
>>> scores = Scores(whisper, time_axis=1, args=(tokens,))         # teacher-forced decoder: one frame per token
>>> maps = attribute_frames(scores, mel, "all", tokens[0, 1:], "lrp")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def scores_tensor(out: Any, field: str = "logits") -> torch.Tensor:
    """The tensor of scores in a model's output: itself, or a ``ModelOutput``'s / dict's ``field``."""
    if isinstance(out, torch.Tensor):
        return out
    value = out.get(field) if isinstance(out, dict) else getattr(out, field, None)
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"the model returned {type(out).__name__} without a tensor {field!r}: wrap it as "
                    "Scores(model, field=...) naming the scores")


def require_scores(out: Any) -> torch.Tensor:
    """``out`` if it is a tensor; an error that says how to wrap the model otherwise (the scores of
    a ``ModelOutput`` are not guessed)."""
    if isinstance(out, torch.Tensor):
        return out
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor of scores: wrap it as "
                    "introspeech.attribution.Scores(model) (ModelOutput logits, frames first, extra inputs)")


class Scores(nn.Module):
    """``model`` with scores as ``(batch, classes[, frames])``.

    ``time_axis``: the axis of frames in the model's 3-D output (``-1``: already last; ``1``:
    ``(batch, frames, classes)``, transposed here); ``field``: the scores in a ``ModelOutput`` or
    dict; ``args``/``kwargs``: further inputs after the explained one (a decoder's tokens);
    ``waveform``: the model takes ``(batch, samples)`` (wav2vec 2.0), analyses pass ``(batch, 1, samples)``."""

    def __init__(self, model: nn.Module, time_axis: int = -1, field: str = "logits", args: tuple = (),
                 kwargs: dict | None = None, waveform: bool = False):
        super().__init__()
        if time_axis not in (-1, 1, 2):
            raise ValueError(f"time_axis must be 1 (frames first) or -1/2 (frames last), not {time_axis}")
        self.model, self.time_axis, self.field, self.waveform = model, time_axis, field, waveform
        self.args, self.kwargs = tuple(args), dict(kwargs or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.waveform:  # (batch, 1, samples), as every analysis passes sequences, to (batch, samples)
            if x.dim() != 3 or x.shape[1] != 1:
                raise ValueError(f"waveform=True takes (batch, 1, samples), got {tuple(x.shape)}")
            x = x[:, 0]
        out = scores_tensor(self.model(x, *self.args, **self.kwargs), self.field)
        if self.time_axis == 1:
            if out.dim() != 3:
                raise ValueError(f"time_axis=1 needs (batch, frames, classes) scores, got {tuple(out.shape)}")
            return out.transpose(1, 2)
        return out
