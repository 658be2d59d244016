"""Both sanity-check cases (speech recognizer, digits CNN) end to end, with ``summary.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from ..audio import FeatureConfig
from ..corpus.utterance import Utterance
from ..models.description import ModelDescription
from .cases import image_case, random_label_speech_model, speech_case
from .check import final_means, run_case, verdicts


def run_sanity(model: nn.Module | ModelDescription, cfg: FeatureConfig, utts: list[Utterance], methods: list[str],
               out: str | Path, examples: int = 4, seed: int = 0, random_label_steps: int = 60, image: bool = True,
               independent: bool = True, progress: Callable[[str], None] | None = None,
               image_epochs: int = 25, image_model: ModelDescription | None = None,
               speech: bool = True, on_error: Callable | None = None) -> tuple[dict, dict]:
    """Run the checks; returns (results per model, summary) and writes ``OUT/summary.json``.

    ``on_error(utterance, error)`` hears of every utterance that cannot be read (it is skipped);
    None: the first one raises.

    ``random_label_steps = 0`` skips the speech data randomization (training a twin on permuted
    transcripts is the slow part; its checkpoint is cached in ``OUT/random_labels``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda m: None)
    shuffled = None
    results: dict = {}
    info: dict = {}
    if speech:
        if random_label_steps:
            say(f"speech: training the architecture on permuted transcripts ({random_label_steps} steps)")
            shuffled = random_label_speech_model(model, cfg, utts, out / "random_labels", random_label_steps, seed,
                                                 on_error)
        results["speech"] = run_case(speech_case(model, cfg, utts, examples, shuffled, on_error=on_error), methods,
                                     seed, independent, say)
        info["speech"] = {"examples": examples, "random_label_steps": random_label_steps}
    if image or image_model is not None:
        say("image: training the digits model's permuted-label twin" if image_model is not None
            else "image: training the digits CNN and its permuted-label twin")
        case, info["image"] = image_case(max(examples, 8), seed, image_epochs, image_model)
        results["image"] = run_case(case, methods, seed, independent, say)
    summary = {name: final_means(r) for name, r in results.items()}
    summary["verdicts"] = {name: verdicts(r) for name, r in results.items()}
    summary["data_randomization"] = {name: {m: {k: v["mean"] for k, v in r[m]["data"].items()}
                                            for m in r if "data" in r[m]} for name, r in results.items()}
    summary["models"] = info
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    curves = {name: {m: {k: r[m][k] for k in ("cascading", "independent")} for m in r} for name, r in results.items()}
    (out / "curves.json").write_text(json.dumps(curves, indent=1, default=lambda o: np.asarray(o).tolist()))
    return results, summary
