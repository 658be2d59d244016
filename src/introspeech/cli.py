"""The `introspeech` command: thin sub-commands over the library."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="introspeech: look inside convolutional speech recognizers (and any PyTorch model).",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Every command defaults to the built-in model and corpus when --model/--corpus are omitted."""


def _progress(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="utt")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder for audio, manifests and alignments."),
    hours: float = typer.Option(1.0, "--hours", help="Total hours of audio (all splits)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same corpus."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core)."),
) -> None:
    """Synthesize a speech corpus (espeak-ng, festival, flite) with exact word and phone timings."""
    from .corpus.synth.driver import synthesize

    update, bar = _progress("synth")
    summary = synthesize(out, hours, seed, workers or None, progress=update)
    bar.close()
    brief = {k: summary[k] for k in ("hours", "utterances", "failed", "cmudict_agreement", "wall_seconds",
                                     "audio_seconds_per_second")}
    typer.echo(json.dumps(brief, indent=1))


def main() -> None:  # pragma: no cover
    app()
