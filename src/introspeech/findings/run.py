"""`introspeech findings`: the seed's claims measured on several models and corpora, resumably.

Every (model, corpus, stage) is one JSON file under ``OUT/stages``; a stage that is there with the
same settings is read back, not recomputed, so a run killed at any point and started again with
``--resume`` gives the same numbers (every stage is seeded). Stages:

- ``frames`` (F1, F2, F7): sampled frames of every layer (`representations.sampling`);
- ``patterns`` (F3, F4): models with per-frame symbols (CTC) only;
- ``sanity`` (F5) and ``explanations`` (F6): on a few utterances of the real corpus (each map costs
  backward passes, each point of a deletion curve a forward pass).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..attribution.definitions import has_attention
from ..corpus.utterance import Utterance, fingerprint
from ..models.description import ModelDescription
from ..models.identity import weights_fingerprint
from ..profiles.settings import Layout
from ..representations.sampling import sample_frames
from ..summaries import json_ready
from ..text import IPA_TO_ARPABET
from .claims import verdicts
from .frames import frame_measures, output_units
from .methods import explanation_measures, sanity_measures, spaced
from .patterns import pattern_measures

STAGES = ("frames", "patterns", "sanity", "explanations")


@dataclass(frozen=True)
class FindingsSettings:
    """What every stage measures (stored with each stage; ``--resume`` needs the same)."""

    per_utterance: int = 30  # frames sampled per utterance and layer
    bootstrap: int = 100
    permutations: int = 99
    pattern_utterances: int = 0  # 0: all; models without locality use `global_pattern_utterances`
    global_pattern_utterances: int = 24
    pattern_window: int = 40
    sanity_examples: int = 4
    explanation_utterances: int = 4
    units_per_utterance: int = 2
    faithfulness_steps: int = 5  # deletion/insertion/ROAD points (every point of every unit is a forward pass)
    method_corpora: tuple[str, ...] = ("real",)  # F5 and F6 run on these corpora (else on the first one)
    seed: int = 0

    def for_stage(self, stage: str) -> dict:
        keys = {"frames": ("per_utterance", "bootstrap", "permutations"),
                "patterns": ("pattern_utterances", "global_pattern_utterances", "pattern_window", "bootstrap"),
                "sanity": ("sanity_examples", "bootstrap"),
                "explanations": ("explanation_utterances", "units_per_utterance", "faithfulness_steps", "bootstrap")}[stage]
        return {k: getattr(self, k) for k in (*keys, "seed")}

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def alignment_methods(desc: ModelDescription) -> list[str]:
    """F4's relevance methods: the gradient and ε-LRP, and CP-LRP where the model has attention
    (where ε-LRP is AttnLRP)."""
    return ["gradient", "lrp_epsilon"] + (["cp_lrp"] if has_attention(desc.module) else [])


def sanity_methods(desc: ModelDescription) -> list[str]:
    """F5's methods: the gradient family, ε-LRP (AttnLRP on attention) and CP-LRP where it differs."""
    return ["gradient", "gradient_x_input", "integrated_gradients", "lrp_epsilon"] + (
        ["cp_lrp"] if has_attention(desc.module) else [])


def explanation_methods(desc: ModelDescription) -> list[str]:
    """F6's methods: those of `sanity_methods` but the plain gradient, occlusion and leave-one-out segments."""
    return [m for m in sanity_methods(desc) if m != "gradient"] + ["occlusion", "segments"]


def symbol_groups(desc: ModelDescription) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """Output indices → pattern groups: the letters of a spelling model, the English phoneme tokens of
    a phoneme recognizer (tokens with an ARPAbet phone; others are no group)."""
    if desc.output.spells:
        layout = Layout.of(desc)
        return layout.letter_groups, len(layout.letters)
    alphabet = desc.output.alphabet
    english = [i for i, t in enumerate(alphabet) if t in IPA_TO_ARPABET]
    table = np.full(len(alphabet), -1, np.int64)
    table[english] = np.arange(len(english))
    return (lambda symbols: table[np.asarray(symbols, np.int64)]), len(english)


class StageStore:
    """``OUT/stages/MODEL/CORPUS/STAGE.json``: a stage's result with its settings, the identity of
    the model's weights and of the utterances it read, and its seconds."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.root, self.resume = Path(out) / "stages", resume

    def path(self, model: str, corpus: str, stage: str) -> Path:
        return self.root / model.replace("/", "_") / corpus / f"{stage}.json"

    def get(self, model: str, corpus: str, stage: str, settings: dict, identity: dict) -> dict | None:
        """The stored stage, if resuming and it was made with these settings, weights and utterances."""
        p = self.path(model, corpus, stage)
        if not (self.resume and p.is_file()):
            return None
        held = json.loads(p.read_text())
        return held if held.get("settings") == settings and held.get("identity") == identity else None

    def put(self, model: str, corpus: str, stage: str, result: dict) -> dict:
        p = self.path(model, corpus, stage)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(json_ready(result), indent=1))
        tmp.replace(p)  # a kill never leaves half a stage
        return json.loads(p.read_text())


def run_stage(stage: str, desc: ModelDescription, utts: list[Utterance], s: FindingsSettings,
              on_error: Callable | None, progress: Callable | None) -> dict | None:
    """One stage's measures (None where the stage does not apply to the model)."""
    local = desc.layers[-1].local
    if stage == "frames":
        frames = sample_frames(desc, utts, s.per_utterance, s.seed, on_error=on_error)
        return frame_measures(frames, output_units(desc), s.bootstrap, s.permutations, s.seed, progress)
    if stage == "patterns":
        if desc.output.kind != "ctc":
            return None
        group_of, n_groups = symbol_groups(desc)
        n = s.pattern_utterances if local else s.global_pattern_utterances
        return pattern_measures(desc, spaced(utts, n), alignment_methods(desc), group_of, n_groups, s.pattern_window,
                                s.bootstrap, s.seed, on_error=on_error, progress=progress)
    if stage == "sanity":
        return sanity_measures(desc, spaced(utts, s.sanity_examples), sanity_methods(desc), s.sanity_examples,
                               s.bootstrap, s.seed, on_error=on_error, progress=progress)
    return explanation_measures(desc, spaced(utts, s.explanation_utterances), explanation_methods(desc),
                                s.units_per_utterance, s.faithfulness_steps, s.bootstrap, s.seed, on_error=on_error,
                                progress=progress)


def run_findings(models: dict[str, ModelDescription | Callable[[], ModelDescription]],
                 corpora: dict[str, list[Utterance]], out: str | Path, settings: FindingsSettings | None = None,
                 stages: tuple[str, ...] = STAGES, resume: bool = False, on_error: Callable | None = None,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Every stage for every model and corpus; ``OUT/summary.json`` holds them with the verdicts
    and the seconds per model and stage. ``models``: descriptions, or functions that load one.
    ``resume``: stages stored with the same settings, weights and utterances are read back; any
    other stage runs again (a replaced checkpoint under the same name included)."""
    s = settings or FindingsSettings()
    bad = [x for x in stages if x not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; choose from {list(STAGES)}")
    store = StageStore(Path(out), resume)
    say = progress or (lambda m: None)
    results: dict = {}
    method_corpora = [c for c in corpora if c in s.method_corpora] or list(corpora)[:1]
    corpus_ids = {corpus: fingerprint(utts) for corpus, utts in corpora.items()}
    for name, model in models.items():
        desc = model if isinstance(model, ModelDescription) else model()
        weights = weights_fingerprint(desc.module)
        for corpus, utts in corpora.items():
            identity = {"model": weights, "corpus": corpus_ids[corpus]}
            for stage in stages:
                if stage in ("sanity", "explanations") and corpus not in method_corpora:
                    continue
                held = store.get(name, corpus, stage, s.for_stage(stage), identity)
                if held is None:
                    say(f"{name} · {corpus} · {stage}")
                    t0 = time.perf_counter()
                    measured = run_stage(stage, desc, utts, s, on_error, progress)
                    held = store.put(name, corpus, stage, {"settings": s.for_stage(stage), "identity": identity,
                                                           "result": measured, "seconds": time.perf_counter() - t0})
                results.setdefault(name, {}).setdefault(corpus, {})[stage] = held
    summary = {"models": {m: {c: {st: r["result"] for st, r in v.items()} for c, v in cs.items()}
                          for m, cs in results.items()},
               "seconds": {m: {c: {st: r["seconds"] for st, r in v.items()} for c, v in cs.items()}
                           for m, cs in results.items()},
               "settings": s.to_dict(), "corpora": {c: len(u) for c, u in corpora.items()}}
    summary["verdicts"] = verdicts(summary["models"])
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.json").write_text(json.dumps(json_ready(summary), indent=1))
    return json_ready(summary)
