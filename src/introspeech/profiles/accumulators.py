"""Streaming sums for Neuron Activation Profiles and letter/phoneme patterns.

Everything is a float64 sum or count of fixed shape, so memory does not grow with the corpus and two
partial results merge by addition. Sums run in a fixed order (kernels.py: frame by frame), so the
same utterances in the same order give bit-identical arrays in any process; torch's float32 forward
depends on its thread count, which is therefore a setting.

Array names (axes in brackets)::

    nap/LAYER/KIND/sum            [group, channel]         activations over the group's frames
    nap/LAYER/KIND/count          [group]
    nap/LAYER/KIND/sumsq          [channel]                squares over all frames with a group
    wnap/LAYER/KIND/sum           [group, time, channel]   windows around each occurrence
    wnap/LAYER/KIND/count         [group, time]
    anap/LAYER/letters/sum, count                         gradient-adjusted windows (optional)
    pattern/KIND/ALIGN/sum        [group, time, mel]       input windows; ALIGN: aligned | nominal
    pattern/KIND/ALIGN/count      [group, time]
    shift/hist                    [shift]                  aligned − nominal centre (input frames)
    totals                        TOTALS: utterances, input frames, letter and phoneme occurrences
"""

from __future__ import annotations

import numpy as np

from .settings import Layout, ProfileSettings

TOTALS = ("utterances", "input_frames", "letters", "phonemes")
"""The entries of ``totals``, by name (`add_total`, `total`)."""


def add_total(acc: dict[str, np.ndarray], name: str, n: float) -> None:
    acc["totals"][TOTALS.index(name)] += n


def total(arrays: dict[str, np.ndarray], name: str) -> int:
    return int(arrays["totals"][TOTALS.index(name)])


def empty(layout: Layout, s: ProfileSettings) -> dict[str, np.ndarray]:
    """Zeroed accumulators for a layout and settings."""
    z = {}
    wn, wp = 2 * s.nap_window + 1, 2 * s.pattern_window + 1
    for kind in s.groups:
        g = len(layout.groups(kind))
        for name, c in zip(layout.layers, layout.channels):
            z[f"nap/{name}/{kind}/sum"] = np.zeros((g, c))
            z[f"nap/{name}/{kind}/sumsq"] = np.zeros(c)
            z[f"nap/{name}/{kind}/count"] = np.zeros(g)
            if s.nap_window:
                z[f"wnap/{name}/{kind}/sum"] = np.zeros((g, wn, c))
                z[f"wnap/{name}/{kind}/count"] = np.zeros((g, wn))
            if kind == "letters" and s.gradient_adjusted:
                z[f"anap/{name}/{kind}/sum"] = np.zeros((g, wn, c))
                z[f"anap/{name}/{kind}/count"] = np.zeros((g, wn))
        aligns = ("aligned", "nominal") if kind == "letters" else ("aligned",)
        for a in aligns:
            if kind == "letters" and a == "aligned" and not s.relevance:
                continue
            z[f"pattern/{kind}/{a}/sum"] = np.zeros((g, wp, layout.n_mels))
            z[f"pattern/{kind}/{a}/count"] = np.zeros((g, wp))
    z["shift/hist"] = np.zeros(2 * layout.shift_bins() + 1)
    z["totals"] = np.zeros(len(TOTALS))
    return z


def merge(into: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add a partial result into another (in place; returns it)."""
    if into.keys() != part.keys():
        raise ValueError("partial results of different settings cannot be merged")
    for k, v in part.items():
        into[k] += v
    return into
