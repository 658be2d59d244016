"""`introspeech featvis`: inputs that maximize letters, channels or neurons, and the learned prior
(added to the app in `cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_support import (
    _ALPHABET,
    _FEATURES,
    _MODEL_FACTORY,
    _WEIGHTS,
    _default_prior,
    _speech_data,
)

featvis_app = typer.Typer(help="Feature visualization: inputs that maximize letters, channels or neurons.",
                          add_completion=False)


@featvis_app.callback(invoke_without_command=True)
def featvis(
    ctx: typer.Context,
    objective: list[str] = typer.Option(None, "--objective", help="letter:s, letter:s@31, channel:layer9:17, "
                                        "neuron:layer9:17@31, 'letter:s - letter:z' (repeatable)."),
    out: Path = typer.Option(Path("out/featvis"), "--out", help="Output folder: results.json, .npy inputs, .wav audio."),
    model: Path = typer.Option(None, "--model", help="Checkpoint (default: the built-in model)."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus for bounds, naturalness and audio level (default: built-in)."),
    split: str = typer.Option("test", "--split", help="Split of the corpus to use."),
    params: str = typer.Option("direct,fourier,prior", "--params", help="Parameterizations to run."),
    prior: Path = typer.Option(None, "--prior", help="A prior from `featvis train-prior` (default: the one saved "
                               "with --model, else out/featvis/prior, if present; needed for 'prior')."),
    steps: int = typer.Option(256, "--steps", help="Optimization steps."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same result."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
) -> None:
    """Optimize inputs for objectives (regularized and unregularized) and write them as audio."""
    if ctx.invoked_subcommand is not None:
        return
    if not objective:
        raise typer.BadParameter("give at least one --objective (e.g. letter:s)", param_hint="--objective")
    from tqdm import tqdm

    from .featvis.prior import load_prior
    from .featvis.run import run_featvis

    if prior is not None:
        learned, _ = load_prior(prior)  # given explicitly: it must exist
    else:
        default = _default_prior(model)
        learned = load_prior(default)[0] if Path(f"{default}.json").is_file() else None
    if learned is None and "prior" in params.split(","):
        typer.echo("no learned prior found: the 'prior' parameterization is skipped "
                   "(run `introspeech featvis train-prior`)", err=True)
    own = {"factory": model_factory, "weights": weights, "alphabet": alphabet, "features": features}
    net, data = _speech_data(model, corpus, split, learned.cfg.window if learned else None, own)
    chosen = tuple(p for p in params.split(",") if p)
    bar = tqdm(total=len(objective) * len([p for p in chosen if p != "prior" or learned]), unit="run")

    def progress(msg: str) -> None:
        bar.set_description(msg)
        bar.update(1)

    try:
        results = run_featvis(net, data, objective, out, chosen, learned, steps, seed, progress=progress)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--objective") from None
    bar.close()
    from .report.html import write_report
    from .report.sections.featvis import featvis_section

    write_report(out, [featvis_section(results, out, out, {}, data.audio, data.cfg.sample_rate, steps)],
                 title="introspeech: feature visualization")
    typer.echo(json.dumps(results["objectives"], indent=1))


@featvis_app.command("train-prior")
def train_prior_cmd(
    out: Path = typer.Option(None, "--out", help="Prior path, writes .safetensors + .json (default: beside --model as "
                             "MODEL.prior, else out/featvis/prior)."),
    model: Path = typer.Option(None, "--model", help="Checkpoint whose features and receptive field set the window."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus of real windows (default: built-in)."),
    split: str = typer.Option("test", "--split", help="Split of the corpus to use."),
    windows: int = typer.Option(4000, "--windows", help="Random windows to train on."),
    steps: int = typer.Option(1500, "--steps", help="Adam steps."),
    seed: int = typer.Option(0, "--seed", help="Seed."),
) -> None:
    """Train the learned prior (a small autoencoder of real input windows)."""
    from .featvis.prior import PriorConfig, sample_windows, save_prior, train_prior

    net, data = _speech_data(model, corpus, split, None)
    cfg = PriorConfig(n_mels=data.low.shape[0], window=data.windows.shape[-1])
    prior, info = train_prior(sample_windows(data.feats, cfg.window, windows, seed), cfg, steps, seed=seed)
    save_prior(prior, out or _default_prior(model), {"train": info, "features": data.cfg.to_dict(),
                                                     "model_preset": (net.config or {}).get("preset")})
    typer.echo(json.dumps(info, indent=1))
