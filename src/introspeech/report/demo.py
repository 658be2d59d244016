"""The main job: every capability on the built-in model and corpus, in one HTML report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..asr.checkpoint import load_model
from ..audio import PRESETS
from ..corpus.load import load_corpus, utterance_features
from ..errors import InputError
from .html import Section, write_report
from .sections.asr import asr_section
from .sections.attribution import attribution_section, corpus_bounds
from .sections.corpus import corpus_section, sample_utterance


def run_demo(out_dir: str | Path, corpus: str | Path | None = None, model: str | Path | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Build the report into ``out_dir``; returns the path of ``index.html``."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    splits = load_corpus(corpus)
    cfg = PRESETS["default"]
    sample = sample_utterance(splits)
    sections: list[Section] = []
    log("corpus statistics and sample alignment")
    sections.append(corpus_section(splits, out, cfg, sample))
    try:
        net, cfg, meta = load_model(model)
    except InputError as e:
        if model is not None:
            raise
        log(f"no built-in model yet ({e}); model sections skipped")
        net = None
    if net is not None:
        log("speech recognizer: error rates and sample posteriors")
        sections.append(asr_section(net, cfg, meta, splits, sample, out)[0])
        log("local introspection: every method, all frames at once")
        feats = [utterance_features(u, cfg) for us in splits.values() for u in us]
        sections.append(attribution_section(net, cfg, sample, corpus_bounds(feats), out))
    path = write_report(out, sections, subtitle=f"corpus: {corpus or 'built-in demo corpus'}; "
                                                f"built in {time.perf_counter() - t0:.1f} s")
    log(f"report written to {path}")
    return path
