"""`introspeech findings`: the seed's claims on several models and corpora (registered by cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_support import _STRICT
from .errors import InputError, report_skipped

REAL_SPLITS = "asterisk_g722,pocketsphinx,alsa"
"""The real corpus' distinct recordings (asterisk_8k repeats asterisk_g722's prompts at 8 kHz)."""


def findings(
    out: Path = typer.Option(Path("out/findings"), "--out", help="Output folder: summary.json, findings.md, "
                             "stages/, index.html."),
    models: str = typer.Option("builtin,hama,whisper-tiny.en", "--models", help="Comma-separated: builtin, hama, "
                               "whisper-tiny.en or checkpoint paths."),
    corpus: Path = typer.Option(Path("work/realspeech"), "--corpus", help="The real-speech corpus (`introspeech "
                                "realspeech --out DIR`)."),
    splits: str = typer.Option(REAL_SPLITS, "--splits", help="Splits of the real corpus (their forced-aligned "
                               "utterances are used)."),
    synthetic: Path = typer.Option(None, "--synthetic", help="The synthetic corpus (default: the built-in demo corpus)."),
    synthetic_split: str = typer.Option("test", "--synthetic-split", help="Its split."),
    corpora: str = typer.Option("real,synthetic", "--corpora", help="real, synthetic or both."),
    stages: str = typer.Option("frames,patterns,sanity,explanations", "--stages", help="Stages to run."),
    utterances: int = typer.Option(0, "--utterances", help="At most this many utterances per corpus, evenly spaced "
                                   "(0: all)."),
    per_utterance: int = typer.Option(30, "--per-utterance", help="Frames sampled per utterance (F1, F2, F7)."),
    bootstrap: int = typer.Option(100, "--bootstrap", help="Bootstrap resamples of utterances."),
    permutations: int = typer.Option(99, "--permutations", help="Label permutations per score."),
    pattern_utterances: int = typer.Option(24, "--pattern-utterances", help="Utterances for the patterns of models "
                                           "without locality (each emission's map is a backward pass)."),
    sanity_examples: int = typer.Option(4, "--sanity-examples", help="Examples of the sanity checks (F5)."),
    explanation_utterances: int = typer.Option(4, "--explanation-utterances", help="Utterances explained (F6)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Read back the stages already written with these settings."),
    strict: bool = _STRICT,
) -> None:
    """The seed's claims measured on each model and corpus, with intervals: summary.json, a report
    page and the README's table (findings.md)."""
    from .corpus.load import load_corpus
    from .findings.methods import spaced
    from .findings.run import STAGES, FindingsSettings, run_findings
    from .models.loading import load_description
    from .report.html import write_report
    from .report.sections.findings import findings_section, markdown_table

    chosen_stages = tuple(s for s in stages.split(",") if s)
    bad = [s for s in chosen_stages if s not in STAGES]
    if bad:
        raise typer.BadParameter(f"unknown stage(s) {bad}; choose from {list(STAGES)}", param_hint="--stages")
    names = [m for m in models.split(",") if m]
    if not names:
        raise typer.BadParameter("name at least one model", param_hint="--models")
    data: dict = {}
    for which in [c for c in corpora.split(",") if c]:
        if which == "real":
            if not (corpus / "corpus.json").is_file():
                raise InputError(corpus, "no real-speech corpus here: run `introspeech realspeech --out "
                                         f"{corpus}` (about 10 minutes), or pass --corpora synthetic")
            held = load_corpus(corpus)
            wanted = [s for s in splits.split(",") if s]
            missing = [s for s in wanted if s not in held]
            if missing:
                raise typer.BadParameter(f"corpus has no split {missing[0]!r} (has {sorted(held)})",
                                         param_hint="--splits")
            utts = [u for s in wanted for u in held[s] if u.phones]
        elif which == "synthetic":
            held = load_corpus(synthetic)
            if synthetic_split not in held:
                raise typer.BadParameter(f"corpus has no split {synthetic_split!r} (has {sorted(held)})",
                                         param_hint="--synthetic-split")
            utts = [u for u in held[synthetic_split] if u.phones]
        else:
            raise typer.BadParameter(f"choose real and/or synthetic, not {which!r}", param_hint="--corpora")
        if not utts:
            raise InputError(which, "no utterance with a phone alignment")
        data[which] = spaced(utts, utterances)
    settings = FindingsSettings(per_utterance=per_utterance, bootstrap=bootstrap, permutations=permutations,
                                global_pattern_utterances=pattern_utterances, sanity_examples=sanity_examples,
                                explanation_utterances=explanation_utterances, seed=seed)
    loaders = {m: (lambda m=m: load_description(None if m == "builtin" else m)) for m in names}
    skipped: list[str] = []
    summary = run_findings(loaders, data, out, settings, chosen_stages, resume,
                           on_error=None if strict else lambda _u, e: skipped.append(str(e)),
                           progress=lambda m: typer.echo(m, err=True))
    report_skipped(out, list(dict.fromkeys(skipped)), lambda m: typer.echo(m, err=True))
    table = markdown_table(summary)
    (out / "findings.md").write_text(table + "\n")
    write_report(out, [findings_section(summary, out)], title="introspeech: findings across models")
    typer.echo(table)
    typer.echo(json.dumps(summary["seconds"], indent=1), err=True)
