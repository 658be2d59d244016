"""F5 and F6: the attribution methods on each model, with bootstrap intervals.

F5 compares every example's map of the trained model with its map after the sanity checks'
cascading randomization has reached the input (`sanity.randomize.fully_randomized`: the cascade's
last step) by Spearman |map|; F6 runs `explanations.run.evaluate_explanations`
and keeps every explained unit's deletion, insertion and ROAD areas, phone share and rank agreement
with leave-one-out spans. Intervals resample examples (F5: one per utterance) or utterances (F6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..corpus.utterance import Utterance
from ..explanations.run import evaluate_explanations
from ..models.description import ModelDescription
from ..representations.uncertainty import mean_interval
from ..sanity.cases import speech_case
from ..sanity.check import SENSITIVE, maps
from ..sanity.randomize import fully_randomized, randomizable_layers
from ..sanity.similarity import similarity

F6_COLUMNS = ("deletion_auc", "insertion_auc", "road", "phone_share", "word_share", "loo_agreement")
"""F6's measures per method (`explanations`' names)."""


def spaced(utts: list[Utterance], n: int) -> list[Utterance]:
    """``n`` evenly spaced utterances (all of them when ``n`` is 0 or larger)."""
    return utts if not n or n >= len(utts) else [utts[int(i)] for i in np.linspace(0, len(utts) - 1, n)]


def sanity_measures(desc: ModelDescription, utts: list[Utterance], methods: list[str], examples: int = 4,
                    bootstrap: int = 100, seed: int = 0, on_error: Callable | None = None,
                    progress: Callable | None = None) -> dict:
    """F5: per method, the mean Spearman |map| between the trained model's maps and those after
    full cascading randomization, its interval over examples, and whether it passes (< 0.5)."""
    case = speech_case(desc, desc.features, utts, examples, on_error=on_error)
    layers = case.layers or randomizable_layers(case.model)
    final = fully_randomized(case.model, layers, seed)  # the cascade's last step (its curve: `introspeech sanity`)
    out = {}
    for m in methods:
        if progress:
            progress(f"findings: sanity of {m}")
        values = [similarity(a, b)["spearman_abs"] for a, b in zip(maps(case, case.model, m), maps(case, final, m))]
        row = mean_interval(values, list(range(len(values))), bootstrap, seed)
        row["passes"] = bool(row["value"] < SENSITIVE)
        out[m] = row
    return {"methods": out, "examples": len(case.inputs), "layers_randomized": len(layers)}


def explanation_measures(desc: ModelDescription, utts: list[Utterance], methods: list[str], units: int = 2,
                         steps: int = 5, bootstrap: int = 100, seed: int = 0, on_error: Callable | None = None,
                         progress: Callable | None = None) -> dict:
    """F6: per method, every column of `F6_COLUMNS` with its interval over utterances, and the
    chance levels; ``steps``: points of the deletion, insertion and ROAD curves."""
    summary = evaluate_explanations(desc, utts, methods, letters_per_utterance=units, steps=steps, on_error=on_error,
                                    progress=progress)
    out = {}
    for m, per in summary["per_unit"].items():
        out[m] = {c: mean_interval(per[c], per["utterance"], bootstrap, seed) for c in F6_COLUMNS if c in per}
    return {"methods": out, "chance": summary["chance"], "units": summary["letters"],
            "utterances": summary["utterances"], "unit_kind": summary["units"]}
