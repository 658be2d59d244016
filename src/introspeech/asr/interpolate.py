"""Weight-space interpolation of two checkpoints of one architecture (WiSE-FT, Wortsman et al. 2022).

A model fine-tuned for a new domain (real voices) forgets some of the old one (the synthetic
voices it was trained on); ``(1 - alpha) * base + alpha * tuned``, taken parameter by parameter
from a fine-tuning run and the model it started from, trades the two off along a path that is
often better than either end (the runs share their start, so their weights stay in one basin).
BatchNorm's running statistics are interpolated the same way; its step counter is the tuned
model's.
"""

from __future__ import annotations

import copy

import torch

from ..errors import InputError
from .model import Wav2Letter


def interpolate_models(base: Wav2Letter, tuned: Wav2Letter, alpha: float) -> Wav2Letter:
    """A new model (in eval mode) with ``(1 - alpha) * base + alpha * tuned`` for every floating
    parameter and buffer; ``base`` and ``tuned`` are read only. Other architectures are refused."""
    if base.config != tuned.config:
        raise InputError("--tuned", f"architecture {tuned.config.preset!r} ({len(tuned.config.layers)} layers) differs "
                                    f"from the base model's {base.config.preset!r}: only one architecture interpolates")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], not {alpha}")
    a, b = base.state_dict(), tuned.state_dict()
    mixed = {k: (torch.lerp(a[k].double(), b[k].double(), alpha).to(a[k].dtype) if a[k].is_floating_point()
                 else b[k].clone()) for k in a}
    out = copy.deepcopy(tuned)
    out.load_state_dict(mixed)
    return out.eval()
