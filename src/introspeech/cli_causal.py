"""`introspeech ablate`: do the units NAPs single out matter? (registered on the app by cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_support import _ALPHABET, _FEATURES, _MODEL, _MODEL_FACTORY, _WEIGHTS, _description
from .errors import InputError, report_skipped


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"comma-separated whole numbers, not {text!r}", param_hint=option) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"at least one number, each ≥ 1 (got {text!r})", param_hint=option)
    return values


def ablate(
    out: Path = typer.Option(..., "--out", help="Output folder: summary.json, sweep.{npz,json}, figures, index.html."),
    model: Path = _MODEL,
    corpus: Path = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus)."),
    rank_split: str = typer.Option("test", "--rank-split", help="Split whose NAPs and gradients rank the units."),
    measure_split: str = typer.Option("heldout", "--measure-split", help="Split the ablations are measured on "
                                      "(other speakers by default)."),
    utterances: int = typer.Option(24, "--utterances", help="Measured utterances (evenly spaced; 0: all)."),
    rank_utterances: int = typer.Option(0, "--rank-utterances", help="Ranking utterances (evenly spaced; 0: all)."),
    layers: str = typer.Option("", "--layers", help="Comma-separated layers (default: every profiled layer)."),
    groups: str = typer.Option("letters,phonemes", "--groups", help="letters, phonemes or both."),
    k: str = typer.Option("1,2,4,8,16,32,64", "--k", help="Numbers of top-ranked units to ablate."),
    draws: int = typer.Option(49, "--draws", help="Random unit sets per layer and k (p resolution 1/(draws+1))."),
    min_count: int = typer.Option(10, "--min-count", help="Entries a group needs in each split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random units and of the bootstrap."),
    sae_dir: Path = typer.Option(None, "--sae", help="Ablate the features of these SAEs (the folder `introspeech sae` "
                                 "wrote) instead of neurons, in their layers."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
) -> None:
    """Causal test of NAPs: mean-ablate each group's top-k units (NAP contrast, latent relevance)
    against random units; attribution patching beside every exact ablation."""
    import numpy as np

    from .causal.ablation import AblationSettings, ablation_sweep
    from .causal.summary import save, summarize
    from .causal.targets import check_measurable
    from .corpus.load import load_corpus
    from .profiles.engine import profile_corpus
    from .profiles.settings import ProfileSettings
    from .report.html import write_report
    from .report.sections.causal import causal_section

    desc = _description(model, model_factory, weights, alphabet, features)
    check_measurable(desc)  # a one-line error for an output it cannot measure, before any work
    kinds = tuple(g for g in groups.split(",") if g)
    phonemes_only = desc.output.spaced or desc.output.kind != "ctc"  # phoneme recognizers, Whisper's tokens
    if phonemes_only:
        kinds = tuple(g for g in kinds if g == "phonemes")
        if not kinds:
            raise typer.BadParameter(f"{desc.name}'s units are measured for phonemes, not letters: use --groups "
                                     "phonemes", param_hint="--groups")
    data = load_corpus(corpus)
    for split, option in ((rank_split, "--rank-split"), (measure_split, "--measure-split")):
        if split not in data:
            raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint=option)

    def spaced(utts, n):
        return utts if not n or n >= len(utts) else [utts[int(i)] for i in np.linspace(0, len(utts) - 1, n)]
    rank, measure = spaced(data[rank_split], rank_utterances), spaced(data[measure_split], utterances)
    settings = AblationSettings(layers=tuple(x for x in layers.split(",") if x), kinds=kinds, ks=_ints(k, "--k"),
                                draws=draws, min_count=min_count, seed=seed)
    echo = lambda m: typer.echo(m, err=True)  # noqa: E731
    echo(f"NAPs of {len(rank)} {rank_split} utterances")
    acc = profile_corpus(desc, desc.features, rank, ProfileSettings(groups=("letters", "phonemes") if not
                                                                      phonemes_only else ("phonemes",),
                                                                      relevance="", letters_from="reference"))
    saes = None
    if sae_dir is not None:
        from .causal.sae import load_saes

        if not (sae_dir / "saes.json").is_file():
            raise InputError(str(sae_dir), "no saes.json here (write one with `introspeech sae --out DIR`)")
        saes = load_saes(sae_dir)
    try:
        sweep = ablation_sweep(desc, acc, rank, measure, settings, progress=echo, saes=saes)
    except ValueError as e:
        option = "--min-count" if "--min-count" in str(e) else "--layers" if "layer" in str(e) else "--model"
        raise InputError(option, str(e)) from None
    save(sweep, out)
    summary = {**summarize(sweep, seed=seed), "rank_split": rank_split, "measure_split": measure_split,
               "draws": draws}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    report_skipped(out, list(dict.fromkeys(acc.errors + sweep.errors)), echo)
    write_report(out, [causal_section(summary, out)], title="introspeech: do the units matter?")
    typer.echo(json.dumps({"findings": summary["findings"], "attribution_patching": summary["attribution_patching"]},
                          indent=1))


def sae(
    out: Path = typer.Option(..., "--out", help="Output folder: saes.{safetensors,json}, summary.json, index.html, "
                             "state/ (resumable)."),
    model: Path = _MODEL,
    corpus: Path = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus)."),
    train_split: str = typer.Option("test", "--train-split", help="Split whose activations train the SAEs."),
    eval_split: str = typer.Option("heldout", "--eval-split", help="Split they are measured on."),
    layers: str = typer.Option("", "--layers", help="Comma-separated layers (default: every profiled layer)."),
    expansion: int = typer.Option(4, "--expansion", help="Latents per channel of the layer."),
    k: int = typer.Option(16, "--k", help="Active latents per frame (TopK)."),
    epochs: int = typer.Option(20, "--epochs", help="Passes over the training split (streamed)."),
    seed: int = typer.Option(0, "--seed", help="Seed (corpus order, shuffle buffer, initialization)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUT/state."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
) -> None:
    """TopK sparse autoencoders per layer: reconstruction, dead latents, spliced CER (hama: phone
    error rate; Whisper: CER of its greedy text), and the selectivity of neurons against features
    for letters and phonemes (frames of speech only)."""
    from .causal.sae import SAESettings, save_saes, train_saes
    from .causal.sae_eval import evaluate_saes
    from .causal.targets import check_measurable
    from .corpus.load import load_corpus
    from .profiles.settings import Layout
    from .report.html import write_report
    from .report.sections.causal import sae_section

    desc = _description(model, model_factory, weights, alphabet, features)
    try:
        check_measurable(desc)  # a CTC output, or Whisper's encoder (its decoder writes the spliced text)
    except InputError:
        raise InputError("--model", f"{desc.name}'s output is {desc.output.kind!r}: the spliced error rate needs a "
                                    "CTC output or Whisper's decoder") from None
    data = load_corpus(corpus)
    for split, option in ((train_split, "--train-split"), (eval_split, "--eval-split")):
        if split not in data:
            raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint=option)
    if expansion < 1 or k < 1 or epochs < 1:
        raise typer.BadParameter("--expansion, --k and --epochs must be ≥ 1", param_hint="--k")
    layout = Layout.of(desc)
    settings = SAESettings(expansion=expansion, k=k, epochs=epochs, seed=seed)
    skipped: list[str] = []
    echo = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        saes = train_saes(desc.module, layout, desc.features, data[train_split], settings,
                          [x for x in layers.split(",") if x] or None, out / "state", resume, progress=echo,
                          on_error=lambda u, e: skipped.append(f"{u.audio_path or u.id}\t{e}"))
    except ValueError as e:
        raise InputError("--layers" if "layer" in str(e) else str(out / "state"), str(e)) from None
    save_saes(out, saes, settings)
    details: dict = {}
    summary = {**evaluate_saes(desc, layout, data[eval_split], saes, details=details,
                               on_error=lambda u, e: skipped.append(f"{u.audio_path or u.id}\t{e}")),
               "settings": {"expansion": expansion, "k": k, "epochs": epochs, "seed": seed},
               "train_split": train_split, "eval_split": eval_split}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    report_skipped(out, list(dict.fromkeys(skipped)), echo)
    write_report(out, [sae_section(summary, details=details, out_dir=out, cfg=desc.features)],
                 title="introspeech: sparse autoencoders")
    typer.echo(json.dumps({n: {key: r[key] for key in ("fvu", "dead_share", "spliced_error_rate")}
                           for n, r in summary["layers"].items()}, indent=1))
