"""`introspeech` commands of the analyses over a corpus: naps, patterns, explanations,
representations, sanity (registered on the app in `cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_support import (
    _ALPHABET,
    _CORPUS,
    _ENGINE,
    _FEATURES,
    _MAX_FRAMES,
    _MODEL,
    _MODEL_FACTORY,
    _PROFILE_OUT,
    _REPLOT,
    _RESUME,
    _SAVE_EVERY,
    _SCHEDULER,
    _SPLITS,
    _STRICT,
    _THREADS,
    _WEIGHTS,
    _WORKERS,
    _class_naps,
    _description,
    _pattern_wavs,
    _profile_run,
    _recognizer_description,
    _settings,
)
from .errors import InputError, report_skipped


def naps(
    out: Path = _PROFILE_OUT, model: Path = _MODEL, corpus: Path = _CORPUS, splits: str = _SPLITS,
    groups: str = typer.Option("letters,phonemes", "--groups", help="letters, phonemes or both."),
    letters_from: str = typer.Option("reference", "--letters-from", help="reference (forced alignment) or prediction."),
    window: int = typer.Option(5, "--window", help="Windowed NAPs: layer frames each side of an occurrence (0: none)."),
    metric: str = typer.Option("cosine", "--metric", help="Distance between NAPs: cosine or euclidean."),
    gradient_adjusted: bool = typer.Option(False, "--gradient-adjusted", help="Also gradient-adjusted windowed NAPs."),
    engine: str = _ENGINE, workers: int = _WORKERS, scheduler: str = _SCHEDULER, save_every: int = _SAVE_EVERY,
    resume: bool = _RESUME, replot: bool = _REPLOT, threads: int = _THREADS, strict: bool = _STRICT,
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    max_frames: int = _MAX_FRAMES,
) -> None:
    """Neuron Activation Profiles of letters and phonemes in every layer, clustered and scored."""
    from .profiles import results
    from .profiles.settings import ProfileSettings
    from .report.html import write_report
    from .report.sections.profiles import naps_section

    own = {"factory": model_factory, "weights": weights, "alphabet": alphabet, "features": features, "strict": strict}
    if corpus is not None and str(corpus) == "digits":
        return _class_naps(out, model, own, metric)
    settings = _settings(ProfileSettings, groups=tuple(g for g in groups.split(",") if g), letters_from=letters_from,
                         nap_window=window, relevance="", gradient_adjusted=gradient_adjusted, threads=threads,
                         max_frames=max_frames)
    acc = _profile_run(model, corpus, splits, out, settings, engine, workers, scheduler, save_every, resume, replot, own)
    summary = results.summary(acc, metric)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_report(out, [naps_section(acc, out, summary, metric=metric)], title="introspeech: neuron activation profiles")
    typer.echo(json.dumps({k: summary[k] for k in ("findings", "utterances")}, indent=1))


def patterns(
    out: Path = _PROFILE_OUT, model: Path = _MODEL, corpus: Path = _CORPUS, splits: str = _SPLITS,
    window: int = typer.Option(40, "--window", help="Input frames each side of an aligned letter or phone."),
    method: str = typer.Option("gradient", "--method", help="Attribution method that aligns predictions ('' = nominal only)."),
    align_by: str = typer.Option("max", "--align-by", help="max or centre (of mass) of the summed |relevance|."),
    engine: str = _ENGINE, workers: int = _WORKERS, scheduler: str = _SCHEDULER, save_every: int = _SAVE_EVERY,
    resume: bool = _RESUME, replot: bool = _REPLOT, threads: int = _THREADS, strict: bool = _STRICT,
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    max_frames: int = _MAX_FRAMES,
) -> None:
    """Letter-specific input patterns: aligned windows averaged per letter (and phoneme), normalized."""
    from .profiles import results
    from .profiles.settings import ProfileSettings
    from .report.html import write_report
    from .report.sections.profiles import patterns_section

    settings = _settings(ProfileSettings, pattern_window=window, relevance=method, align_by=align_by, threads=threads,
                         max_frames=max_frames)
    own = {"factory": model_factory, "weights": weights, "alphabet": alphabet, "features": features, "strict": strict,
           "predicted_symbols": True}
    acc = _profile_run(model, corpus, splits, out, settings, engine, workers, scheduler, save_every, resume, replot, own)
    summary = results.summary(acc)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_report(out, [patterns_section(acc, out, summary)], title="introspeech: letter patterns")
    _pattern_wavs(acc, corpus, splits, out)
    typer.echo(json.dumps(summary["findings"], indent=1))


def explanations(
    out: Path = typer.Option(Path("out/explanations"), "--out", help="Output folder: summary.json, figures, index.html."),
    model: Path = _MODEL, corpus: Path = _CORPUS,
    split: str = typer.Option("test", "--split", help="Split whose utterances are explained."),
    methods: str = typer.Option("all", "--methods", help="Comma-separated named methods, or 'all'."),
    utterances: int = typer.Option(8, "--utterances", help="Utterances (evenly spaced over the split; 0: all)."),
    letters: int = typer.Option(12, "--letters", help="Letters per utterance (hama: phonemes; Whisper: tokens; "
                                "evenly spaced; 0: all)."),
    steps: int = typer.Option(10, "--steps", help="Steps of each deletion/insertion curve."),
    baseline: str = typer.Option("mean", "--baseline", help="Replacement of removed patches: mean, noise or blur."),
    sanity_dir: Path = typer.Option(None, "--sanity", help="A folder of `introspeech sanity` (its summary.json "
                                    "gives the sanity column)."),
    digits_too: bool = typer.Option(True, "--digits/--no-digits", help="Also faithfulness on the digits CNN "
                                    "(trained by the command, seconds)."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    strict: bool = _STRICT,
) -> None:
    """Which explanation to trust: faithfulness (deletion, insertion, ROAD) and localization against phone
    timings, one row per method."""
    import numpy as np

    from .attribution.definitions import NAMED, has_attention, named_methods
    from .corpus.load import load_corpus
    from .explanations.faithfulness import BASELINES
    from .explanations.run import evaluate_explanations
    from .explanations.tokens import explains_tokens
    from .report.html import write_report
    from .report.sections.explanations import explanations_section, findings

    chosen = [m for m in methods.split(",") if m]
    bad = [m for m in chosen if m not in NAMED and methods != "all"]
    if bad:
        raise typer.BadParameter(f"unknown method(s) {bad}; choose from {list(NAMED)}", param_hint="--methods")
    if baseline not in BASELINES:
        raise typer.BadParameter(f"choose from {BASELINES}", param_hint="--baseline")
    sanity = None
    if sanity_dir is not None:
        path = sanity_dir / "summary.json"
        if not path.is_file():
            raise InputError(path, "no sanity summary here (run `introspeech sanity --out DIR` first)")
        sanity = json.loads(path.read_text())
    desc = _description(model, model_factory, weights, alphabet, features)
    if not explains_tokens(desc):  # Whisper's encoder is explained on its decoder's tokens
        desc = _recognizer_description(model, model_factory, weights, alphabet, features)
    if methods == "all":  # CP-LRP only where there is attention (elsewhere it is ε-LRP again)
        chosen = named_methods(has_attention(desc.module))
    data = load_corpus(corpus)
    if split not in data:
        raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint="--split")
    utts = data[split]
    if utterances and len(utts) > utterances:
        utts = [utts[int(i)] for i in np.linspace(0, len(utts) - 1, utterances)]
    skipped: list[str] = []
    summary = evaluate_explanations(desc, utts, chosen, letters, steps, baseline=baseline, sanity=sanity,
                                    on_error=None if strict else lambda _u, e: skipped.append(str(e)),
                                    progress=lambda m: typer.echo(m, err=True))
    if digits_too:
        from .report.demo import digits_explanations

        summary["digits"] = digits_explanations(chosen, steps, baseline, sanity)
    summary["findings"] = findings(summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    report_skipped(out, skipped, lambda m: typer.echo(m, err=True))
    write_report(out, [explanations_section(summary, out)], title="introspeech: which explanation to trust")
    typer.echo(summary["findings"])


def representations(
    out: Path = typer.Option(Path("out/representations"), "--out", help="Output folder: summary.json, figures, "
                             "index.html."),
    model: Path = _MODEL, corpus: Path = _CORPUS,
    split: str = typer.Option("test", "--split", help="Split whose frames are sampled."),
    per_utterance: int = typer.Option(40, "--per-utterance", help="Frames sampled per utterance."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples of utterances."),
    permutations: int = typer.Option(199, "--permutations", help="Label permutations (CKA, NAP silhouette)."),
    probe_permutations: int = typer.Option(19, "--probe-permutations", help="Label permutations of the probes "
                                           "(each refits a probe)."),
    random_baseline: bool = typer.Option(True, "--random-network/--no-random-network",
                                         help="Also probe a re-initialized copy of the model."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample, the splits, the control task and resamples."),
    compare: Path = typer.Option(None, "--compare", help="Another run's output folder (e.g. on real speech), "
                                 "drawn dashed beside this one."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    strict: bool = _STRICT,
) -> None:
    """Where phones live: probes with control tasks, CKA and NAP silhouettes per layer, with intervals."""
    from .corpus.load import load_corpus
    from .report.html import write_report
    from .report.sections.representations import representations_section
    from .representations.run import analyse

    desc = _description(model, model_factory, weights, alphabet, features)
    if desc.output.kind not in ("ctc", "encoder"):
        raise InputError("--model", f"representations need per-frame layers; {desc.name}'s output is {desc.output.kind}")
    data = load_corpus(corpus)
    if split not in data:
        raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint="--split")
    other = None
    if compare is not None:
        if not (compare / "summary.json").is_file():
            raise InputError(compare, "no summary.json of an `introspeech representations` run in this folder")
        other = json.loads((compare / "summary.json").read_text())
    skipped: list[str] = []
    summary = analyse(desc, data[split], per_utterance, bootstrap, permutations, probe_permutations, random_baseline,
                      seed, on_error=None if strict else lambda _u, e: skipped.append(str(e)),
                      progress=lambda m: typer.echo(m, err=True))
    maps = summary.pop("maps")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    report_skipped(out, skipped, lambda m: typer.echo(m, err=True))
    names = (f"{corpus or 'built-in corpus'} {split}", str(compare)) if other else ("", "")
    write_report(out, [representations_section(summary, out, maps, other, names)],
                 title="introspeech: where phones live")
    typer.echo(json.dumps(summary["findings"], indent=1))


def sanity(
    out: Path = typer.Option(Path("out/sanity"), "--out",
                             help="Output folder: summary.json, curves.json, figures, index.html."),
    model: Path = typer.Option(None, "--model", help="Checkpoint (default: the built-in model)."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus)."),
    split: str = typer.Option("test", "--split", help="Split the examples and the permuted-label training come from."),
    methods: str = typer.Option("all", "--methods", help="Comma-separated methods (see sanity.check.METHODS), or 'all'."),
    examples: int = typer.Option(4, "--examples", help="Speech examples (the image model uses at least 8)."),
    random_label_steps: int = typer.Option(60, "--random-label-steps",
                                           help="CTC steps of the permuted-transcript twin (0: skip data randomization)."),
    image: bool = typer.Option(True, "--image/--no-image", help="Also the digits CNN (trained by the command, seconds)."),
    independent: bool = typer.Option(True, "--independent/--no-independent", help="Also one-layer-at-a-time randomization."),
    seed: int = typer.Option(0, "--seed", help="Seed of the re-initializations and of the permutations."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    strict: bool = _STRICT,
) -> None:
    """Sanity checks of every attribution method: parameter and data randomization (Adebayo et al.)."""
    from .attribution.definitions import has_attention, named_methods
    from .corpus.load import load_corpus
    from .report.html import write_report
    from .report.sections.sanity import sanity_section
    from .sanity.check import METHODS
    from .sanity.run import run_sanity

    chosen = list(METHODS) if methods == "all" else [m for m in methods.split(",") if m]
    bad = [m for m in chosen if m not in METHODS]
    if bad:
        raise typer.BadParameter(f"unknown method(s) {bad}; choose from {list(METHODS)}", param_hint="--methods")
    if corpus is not None and str(corpus) == "digits":  # a user's image classifier of the digits
        if model_factory is None:
            raise InputError("--corpus", "digits are images: give an image classifier with --model-factory")
        from .models.description import Output
        from .models.loading import load_description
        from .sanity.digits import digits

        image_model = load_description(None, model_factory, weights, None, None, example=digits(seed)[2][:1],
                                       output=Output("classes", tuple(str(i) for i in range(10)), None))
        results, summary = run_sanity(None, None, [], chosen, out, examples, seed, 0, False, independent,
                                      progress=lambda m: typer.echo(m, err=True), image_model=image_model,
                                      speech=False)
        write_report(out, [sanity_section(results, out, n_examples=examples)], title="introspeech: sanity checks")
        typer.echo(json.dumps(summary["verdicts"], indent=1))
        return
    desc = _description(model, model_factory, weights, alphabet, features)
    if methods == "all":  # CP-LRP only where there is attention (elsewhere it is ε-LRP again)
        chosen = [m for m in named_methods(has_attention(desc.module)) if m in METHODS]
    data = load_corpus(corpus)
    if split not in data:
        raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint="--split")
    skipped: list[str] = []
    results, summary = run_sanity(desc, desc.features, data[split], chosen, out, examples, seed, random_label_steps, image,
                                  independent, progress=lambda m: typer.echo(m, err=True),
                                  on_error=None if strict else lambda _u, e: skipped.append(str(e)))
    report_skipped(out, list(dict.fromkeys(skipped)), lambda m: typer.echo(m, err=True))
    write_report(out, [sanity_section(results, out, n_examples=examples)], title="introspeech: sanity checks")
    typer.echo(json.dumps(summary["verdicts"], indent=1))
