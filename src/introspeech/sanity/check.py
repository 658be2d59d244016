"""Running the sanity checks: every method's maps of the trained model against those of cascading
and independently randomized copies, and of a model trained on permuted labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..attribution import attribute
from ..attribution import method as method_record
from ..attribution.definitions import NAMED
from .randomize import cascading, independent, randomizable_layers
from .similarity import similarity, summarize

METHODS: dict[str, tuple[str, dict]] = {k: v for k, v in NAMED.items() if method_record(v[0]).frames is None}
"""The methods checked, with the options used (names as in the report and summary.json): the
named configurations (`attribution.definitions.NAMED`) but the perturbation methods."""

SENSITIVE = 0.5
"""A method passes (its maps depend on the learned parameters) when the mean Spearman correlation
of |map| after full cascading randomization is below this."""


@dataclass
class Case:
    """One model under test: examples (inputs of batch 1 with a target each), how a map becomes a
    2-D array, and the context methods may need (``layer``: Grad-CAM's layer; ``low``/``high``: z^B
    bounds), given to each method as its definition asks (`Method.with_context`)."""

    name: str
    model: nn.Module
    inputs: list[torch.Tensor]
    targets: list
    to_2d: Callable[[torch.Tensor], np.ndarray]
    context: dict = field(default_factory=dict)
    random_labels: nn.Module | None = None
    layers: list[str] | None = None
    bind: Callable[[nn.Module, int], nn.Module] | None = None  # the model of example i (Whisper: its tokens)


def maps(case: Case, model: nn.Module, method: str) -> list[np.ndarray]:
    """The method's map of every example, as 2-D arrays."""
    name, opts = METHODS[method]
    opts = method_record(name).with_context(opts, **case.context)
    return [case.to_2d(attribute(case.bind(model, i) if case.bind else model, x, t, name, **opts))
            for i, (x, t) in enumerate(zip(case.inputs, case.targets))]


def _compare(ref: list[np.ndarray], other: list[np.ndarray]) -> dict:
    return summarize([similarity(a, b) for a, b in zip(ref, other)])


def run_case(case: Case, methods: list[str], seed: int = 0, independent_too: bool = True,
             progress: Callable[[str], None] | None = None) -> dict:
    """Curves and examples per method: ``{"cascading": [...], "independent": [...], "data": ...,
    "examples": {"trained": map, LAYER: map, ...}}`` (similarities as mean/std per metric)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    layers = case.layers or randomizable_layers(case.model)
    out: dict = {m: {"cascading": [], "independent": [], "examples": {}} for m in methods}
    ref = {}
    for m in methods:
        ref[m] = maps(case, case.model, m)
        out[m]["examples"]["trained"] = ref[m][0]
    for layer, net in cascading(case.model, layers, seed):
        if progress:
            progress(f"{case.name}: cascading randomization down to {layer}")
        for m in methods:
            got = maps(case, net, m)
            out[m]["cascading"].append({"layer": layer, **_compare(ref[m], got)})
            out[m]["examples"][layer] = got[0]
    if independent_too:
        for layer, net in independent(case.model, layers, seed):
            if progress:
                progress(f"{case.name}: independent randomization of {layer}")
            for m in methods:
                out[m]["independent"].append({"layer": layer, **_compare(ref[m], maps(case, net, m))})
    if case.random_labels is not None:
        if progress:
            progress(f"{case.name}: model trained on permuted labels")
        for m in methods:
            got = maps(case, case.random_labels, m)
            out[m]["data"] = _compare(ref[m], got)
            out[m]["examples"]["random labels"] = got[0]
    return out


def final_means(result: dict) -> dict[str, dict[str, float]]:
    """Per method, the mean similarities after full cascading randomization (summary.json)."""
    return {m: {k: v["mean"] for k, v in r["cascading"][-1].items() if k != "layer"} for m, r in result.items()}


def verdicts(result: dict) -> dict[str, str]:
    """Per method: does the map depend on the learned parameters (see `SENSITIVE`)?"""
    out = {}
    for m, r in result.items():
        s = r["cascading"][-1]["spearman_abs"]["mean"]
        out[m] = ("passes: depends on the parameters" if s < SENSITIVE else
                  "fails: map survives full randomization") + f" (Spearman |map| {s:.2f})"
    return out
