"""The `introspeech` command: thin sub-commands over the library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from typer.core import TyperGroup

from .cli_analysis import explanations, naps, patterns, representations, sanity
from .cli_causal import ablate, sae
from .cli_data import evaluate, language_model, pack, realspeech, synth, train, transcribe
from .cli_featvis import featvis_app
from .cli_findings import findings as findings_command
from .cli_support import (
    _ALPHABET,
    _FEATURES,
    _MODEL_FACTORY,
    _STRICT,
    _WEIGHTS,
    _description,
    _recognizer_description,
)
from .errors import InputError


class _Commands(TyperGroup):
    """Errors about the user's files, arguments or models end the command with one line and status 2
    (``--debug`` or INTROSPEECH_DEBUG=1: the traceback); internal errors keep their traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as e:
            if os.environ.get("INTROSPEECH_DEBUG"):
                raise
            typer.echo(f"error: {e}", err=True)
            ctx.exit(2)


app = typer.Typer(help="introspeech: look inside convolutional speech recognizers (and any PyTorch model).",
                  no_args_is_help=True, add_completion=False, cls=_Commands)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the traceback of errors about your input.")) -> None:
    """Every command defaults to the built-in model and corpus when --model/--corpus are omitted."""
    if debug:
        os.environ["INTROSPEECH_DEBUG"] = "1"


def main() -> None:  # pragma: no cover
    app()


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print the models as JSON.")) -> None:
    """The recognizers that learned from real speech, by name (for --model), and whether they are installed."""
    from .models.packaged import PACKAGED

    rows = [{"name": p.name, "installed": p.installed, "licence": p.licence, "summary": p.summary,
             "install": p.install} for p in PACKAGED.values()]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        state = "installed" if r["installed"] else f"not installed: {r['install']}"
        typer.echo(f"{r['name']:<18}{r['licence']:<12}{state}\n{'':<18}{r['summary']}")


@app.command()
def layers(
    model: Path = typer.Option(None, "--model", help="Checkpoint or packaged model name (default: the built-in model)."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET,
    features: str = _FEATURES,
    as_json: bool = typer.Option(False, "--json", help="Print the layers as JSON."),
) -> None:
    """The layers an analysis profiles: module paths, channels, receptive fields (in input frames), where
    the frames are in each output, and whether the layer sees a window of the input or all of it."""
    desc = _description(model, model_factory, weights, alphabet, features)
    rows = [{"name": layer.name, "path": layer.path or "(output)", "channels": layer.channels,
             **({"rf": layer.geometry.rf, "stride": layer.geometry.stride, "offset": layer.geometry.offset,
                 "time_axis": layer.time_axis, "local": layer.local} if layer.geometry else {})} for layer in desc.layers]
    if as_json:
        typer.echo(json.dumps({"model": desc.name, "output": desc.output.kind, "layers": rows}))
        return
    rate = desc.features.frame_rate if desc.features else None
    typer.echo(f"{desc.name}: {desc.output.kind} output over {len(desc.output.alphabet)} symbols")
    wn = max([24] + [len(r["name"]) + 2 for r in rows])
    wp = max([28] + [len(r["path"]) + 2 for r in rows])
    typer.echo(f"{'layer':<{wn}}{'module path':<{wp}}{'channels':>9}{'rf':>7}{'stride':>8}{'offset':>8}  layout")
    for r in rows:
        geo = ""
        if "rf" in r:
            rf = r["rf"] if r["local"] else "all"
            shape = "(B, C, T)" if r["time_axis"] == -1 else "(B, T, C)"
            geo = f"{rf:>7}{r['stride']:>8}{r['offset']:>8}  {shape}" + ("" if r["local"] else ", not local")
        typer.echo(f"{r['name']:<{wn}}{r['path']:<{wp}}{r['channels']:>9}{geo}")
    last = desc.layers[-1] if desc.layers else None
    if rate and last and last.geometry and last.local:
        typer.echo(f"receptive field of the output: {last.geometry.rf / rate:.2f} s")
    elif rate and last and last.geometry:
        typer.echo(f"the output sees the whole input (attention or global pooling); frames every "
                   f"{last.geometry.stride / rate * 1000:.0f} ms")


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Report folder (index.html and assets)."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus)."),
    model: Path = typer.Option(None, "--model", help="Checkpoint (default: the built-in model)."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    strict: bool = _STRICT,
) -> None:
    """Run every analysis on the built-in model and corpus (or on your own model) and write an HTML report."""
    from .report.demo import run_demo

    if model_factory is not None:
        model = _recognizer_description(model, model_factory, weights, alphabet, features, builtin_alphabet=True)
    run_demo(out, corpus, model, log=lambda m: typer.echo(m, err=True), strict=strict)


for _command in (synth, train, pack, realspeech, transcribe, evaluate, naps, patterns, explanations,
                 representations, sanity):
    app.command()(_command)
app.command("lm")(language_model)
app.command("ablate")(ablate)
app.command("sae")(sae)
app.command("findings")(findings_command)
app.add_typer(featvis_app, name="featvis")
