"""The `introspeech` command: thin sub-commands over the library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from typer.core import TyperGroup

from .cli_causal import ablate, sae
from .cli_findings import findings as findings_command
from .cli_support import (
    _ALPHABET,
    _BEAM,
    _CORPUS,
    _ENGINE,
    _FEATURES,
    _LM,
    _LM_WEIGHT,
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
    _WORD_BONUS,
    _WORKERS,
    _beam_decoder,
    _class_naps,
    _decoder,
    _default_prior,
    _description,
    _evaluate_report,
    _packaged_transcriber,
    _pattern_wavs,
    _print_phone_errors,
    _profile_run,
    _progress,
    _recognizer,
    _recognizer_description,
    _settings,
    _speech_data,
)
from .errors import InputError, report_skipped


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


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder for audio, manifests and alignments."),
    hours: float = typer.Option(1.0, "--hours", help="Total hours of audio (all splits)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same corpus."),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core)."),
    accented: bool = typer.Option(False, "--accented", help="Only a train split, spoken as accented English by "
                                  "festival's Italian, Czech and Finnish voices (train it with --extra-train)."),
    piper: bool = typer.Option(False, "--piper", help="Only a train split, spoken by Piper's neural voice (joe, "
                               "from a real speaker's recordings; train it with --extra-train)."),
    augment: float = typer.Option(0.0, "--augment", help="Share of training utterances given acoustic effects "
                                  "(speed, room, noise, telephone/G.722 channels), 0 to 1."),
    phrases: float = typer.Option(0.0, "--phrases", help="Share of training utterances that say only 1-3 words of "
                                  "their sentence (isolated words, short prompts), 0 to 1."),
    effects: str = typer.Option("speed,pad,room,noise,channel,gain", "--effects",
                                help="With --augment: the effects of the chain that may apply (comma-separated; "
                                     "the others are off), e.g. room for an ablation of rooms alone."),
    kokoro: bool = typer.Option(False, "--kokoro", help="A corpus spoken by Kokoro-82M's English neural voices "
                                "(US and GB, female and male); its heldout split by voices never trained on."),
    voices: str = typer.Option("", "--voices", help="With --kokoro: the voices to train on, comma-separated "
                               "(default: every English voice but the held-out ones)."),
    blends: int = typer.Option(0, "--blends", help="With --kokoro: this many seeded blends of two training "
                               "voices of the same sex, as further speakers."),
    resume: bool = typer.Option(False, "--resume", help="Keep what an earlier run into --out with the same "
                                "settings finished, and render only the rest."),
    part: str = typer.Option("0/1", "--part", help="I/N: render only the I-th (from 0) of N consecutive slices of "
                             "the training utterances, the last with all evaluation ones (a long corpus made slice by slice)."),
) -> None:
    """Synthesize a speech corpus (espeak-ng, festival, flite, Piper, Kokoro) with exact word and phone timings."""
    from .corpus.synth.acoustics import Acoustics
    from .corpus.synth.driver import synthesize

    chosen = tuple(e.strip() for e in effects.split(",") if e.strip())
    try:
        Acoustics.only(chosen)
    except ValueError as e:
        raise InputError("--effects", str(e)) from None

    for name, share in (("--augment", augment), ("--phrases", phrases)):
        if not 0.0 <= share <= 1.0:
            raise InputError(name, f"must be between 0 and 1, got {share}")
    if sum((piper, accented, kokoro)) > 1:
        raise InputError("--piper", "choose one of --piper, --accented and --kokoro")
    if (voices or blends) and not kokoro:
        raise InputError("--voices" if voices else "--blends", "is an option of --kokoro")
    if blends < 0:
        raise InputError("--blends", f"must be 0 or more, got {blends}")
    chosen_voices = tuple(v.strip() for v in voices.split(",") if v.strip()) or None
    if kokoro:
        from .corpus.synth.kokoro_voice import check_installed, training_voices

        try:
            training_voices(chosen_voices)
        except ValueError as e:
            raise InputError("--voices", str(e)) from None
        try:
            check_installed()
        except RuntimeError as e:
            raise InputError("--kokoro", str(e)) from None
    try:
        i_part, n_parts = (int(x) for x in part.split("/"))
        if not 0 <= i_part < n_parts:
            raise ValueError
    except ValueError:
        raise InputError("--part", f"expected I/N with 0 <= I < N, got {part!r}") from None
    update, bar = _progress("synth")
    try:
        summary = synthesize(out, hours, seed, workers or None, progress=update, accented=accented, piper=piper,
                             augment=augment, phrases=phrases, effects=chosen, kokoro=kokoro, voices=chosen_voices,
                             blends=blends, resume=resume, part=(i_part, n_parts))
    except ValueError as e:
        raise InputError("--resume" if resume else "--out", str(e)) from None
    bar.close()
    brief = {k: summary[k] for k in ("hours", "utterances", "failed", "cmudict_agreement", "wall_seconds",
                                     "audio_seconds_per_second", "complete")}
    typer.echo(json.dumps(brief, indent=1))


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
def train(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with train.jsonl and valid.jsonl."),
    out: Path = typer.Option(..., "--out", help="Model folder (model.* = best, last.* = resume state)."),
    preset: str = typer.Option("default", "--preset", help="Model preset: default, paper or tiny."),
    epochs: int = typer.Option(30, "--epochs", help="Epochs the learning-rate schedule spans."),
    minutes: float = typer.Option(0.0, "--minutes", help="Stop this run after N minutes (0: no limit); resumable."),
    batch_frames: int = typer.Option(16000, "--batch-frames", help="Padded input frames per batch."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialization, batch order and masking."),
    specaugment: bool = typer.Option(True, "--specaugment/--no-specaugment", help="Light time/frequency masking."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from OUT/last.*."),
    vtlp: float = typer.Option(0.0, "--vtlp", help="Vocal tract length perturbation: max warp (e.g. 0.12; 0: off)."),
    init: Path = typer.Option(None, "--init", help="Start from this checkpoint's weights (fine-tuning)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cuda (checkpoints load on the CPU)."),
    extra_train: list[Path] = typer.Option([], "--extra-train", help="Another corpus whose train split is added "
                                           "(repeatable), e.g. one from `synth --accented`."),
    model_factory: str = typer.Option(None, "--model-factory", help="Train your own model (MODULE:FUNCTION) instead "
                                      "of a preset; weights go to OUT/model.safetensors (use them with --weights)."),
) -> None:
    """Train a Wav2Letter-style recognizer with CTC (checkpoints: safetensors + JSON)."""
    from tqdm import tqdm

    from .asr.train import TrainConfig
    from .asr.train import train as run

    cfg = TrainConfig(preset=preset, epochs=epochs, batch_frames=batch_frames, lr=lr, seed=seed, specaugment=specaugment,
                      vtlp=vtlp, init=str(init) if init else "", extra_train=[str(p) for p in extra_train],
                      factory=model_factory or "")
    bar = tqdm(unit="batch")

    def progress(p: dict) -> None:
        bar.total = p["batches"]
        bar.n = p["batch"]
        bar.set_description(f"epoch {p['epoch'] + 1}/{epochs}")
        bar.set_postfix(loss=f"{p['loss']:.3f}", audio_s_per_s=f"{p['audio_per_s']:.0f}", lr=f"{p['lr']:.2e}")

    def log(entry: dict) -> None:
        bar.write(json.dumps(entry))

    result = run(corpus, out, cfg, minutes=minutes or None, resume=resume, log=log, progress=progress, device=device)
    bar.close()
    typer.echo(json.dumps({"best_valid_cer": result["state"]["best_cer"], "epoch": result["state"]["epoch"],
                           "stopped_early": result["stopped_early"], "corpus": result["corpus"]}, indent=1))


@app.command()
def pack(
    out: Path = typer.Option(..., "--out", help="Folder for index.json and the compressed chunks."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus folder (default: the built-in corpus)."),
    splits: str = typer.Option("train,valid", "--splits", help="Comma-separated splits to pack."),
    preset: str = typer.Option("default", "--preset", help="Model preset whose features to pack."),
    step: float = typer.Option(0.25, "--step", help="Quantization step of the normalized features."),
) -> None:
    """Pack a corpus' normalized features (quantized, lzma) to train where the audio is not
    (``python scripts/train_packed.py OUT --device cuda``)."""
    from .asr.packed import pack as run
    from .asr.train import feature_config_for
    from .corpus.load import builtin_corpus

    index = run(corpus or builtin_corpus(), out, feature_config_for(preset), tuple(splits.split(",")), step=step)
    typer.echo(json.dumps({k: sum(len(e["utterances"]) for e in v) for k, v in index["splits"].items()}))


@app.command()
def realspeech(
    out: Path = typer.Option(Path("work/realspeech"), "--out", help="Output folder (manifests, audio, features)."),
    align: bool = typer.Option(True, "--align/--no-align", help="Word and phone timings from pocketsphinx."),
) -> None:
    """A test-only corpus of real human speech from Debian packages (Asterisk prompts, LibriVox
    excerpts, ALSA voices), transcripts normalized, forced-aligned; never trained on."""
    from .corpus.realspeech import build, install_hint

    update, bar = _progress("realspeech")
    try:
        summary = build(out, align=align, progress=update)
    except FileNotFoundError as e:
        raise InputError("realspeech", str(e)) from None
    bar.close()
    for split, why in summary["missing"].items():
        typer.echo(f"{split}: {why}; {install_hint()}", err=True)
    typer.echo(json.dumps({k: summary[k] for k in ("splits", "changed")} | {
        "dropped": len(summary["dropped"]), "unaligned": len(summary["unaligned"])}, indent=1))


@app.command()
def transcribe(
    audio: list[Path] = typer.Argument(..., help="Audio files (any format soundfile reads; resampled to 16 kHz)."),
    model: Path = typer.Option(None, "--model", help="Checkpoint (default: the built-in model)."),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    max_frames: int = _MAX_FRAMES, lm: Path = _LM, beam: int = _BEAM, lm_weight: float = _LM_WEIGHT,
    word_bonus: float = _WORD_BONUS,
) -> None:
    """Print the CTC transcript of each audio file (greedy, or a beam search with --lm; long recordings in
    exact overlapping pieces)."""
    from .asr.evaluate import transcribe as run
    from .audio import features as compute_features
    from .audio import load_audio

    text = _packaged_transcriber(model, lm)
    if text is not None:
        net = cfg = decode = searcher = None
    else:
        net, cfg, decode = _recognizer(model, model_factory, weights, alphabet, features)
        searcher, _ = _beam_decoder(lm, beam, lm_weight, word_bonus, decode)
    failed = 0
    for path in audio:
        try:
            if text is not None:
                typer.echo(f"{path}\t{text(load_audio(path, 16000))}")
            else:
                typer.echo(f"{path}\t{run(net, compute_features(path, cfg), max_frames, decode, searcher)}")
        except InputError as e:
            failed += 1
            typer.echo(f"error: {e}", err=True)
    if failed:
        typer.echo(f"{failed} of {len(audio)} files failed", err=True)
        raise typer.Exit(1)


@app.command()
def evaluate(
    model: Path = typer.Option(None, "--model", help="Checkpoint (default: the built-in model)."),
    corpus: Path = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus)."),
    splits: str = typer.Option("", "--splits", help="Comma-separated splits (default: all but train)."),
    out: Path = typer.Option(Path("out/evaluate.json"), "--out",
                             help="Write metrics and per-utterance results here (JSON)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"splits": {NAME: {"cer", "wer", "utterances"}}}.'),
    model_factory: str = _MODEL_FACTORY, weights: Path = _WEIGHTS, alphabet: str = _ALPHABET, features: str = _FEATURES,
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad utterance (default: skip and list it "
                                "in skipped.tsv beside --out)."),
    lm: Path = _LM, beam: int = _BEAM, lm_weight: float = _LM_WEIGHT, word_bonus: float = _WORD_BONUS,
) -> None:
    """CER and WER per split (greedy CTC decoding, or a prefix beam search with a word language model); for a
    phoneme recognizer (--model hama), the phone error rate against the corpus' phone alignments."""
    from .asr.evaluate import evaluate_phonemes, evaluate_split
    from .corpus.load import load_corpus

    desc = _recognizer_description(model, model_factory, weights, alphabet, features)
    net, cfg = desc.module, desc.features
    searcher, decoder = _beam_decoder(lm, beam, lm_weight, word_bonus, _decoder(desc))
    data = load_corpus(corpus)
    names = [s for s in splits.split(",") if s] or [s for s in data if s != "train"]
    result: dict = {"decoder": decoder, "splits": {}}
    rows: dict = {}
    errors: list[str] = []
    phonemes = desc.output.spaced  # a phoneme recognizer: phone error rate against the corpus' alignments
    if phonemes and lm is not None:
        raise InputError("--lm", f"{desc.name} emits phonemes; --lm fuses a word model into letter decoding")
    for name in names:
        if name not in data:
            raise typer.BadParameter(f"corpus has no split {name!r} (has {sorted(data)})", param_hint="--splits")
        keep = None if strict else lambda u, e: errors.append(str(e))
        if phonemes:
            metrics, rows[name] = evaluate_phonemes(net, cfg, data[name], desc.output, keep)
        else:
            metrics, rows[name] = evaluate_split(net, cfg, data[name], on_error=keep, decode=_decoder(desc),
                                                 beam=searcher)
        result["splits"][name] = metrics
    if phonemes:
        _print_phone_errors(result, rows, names, out, errors, as_json)
        return
    if len(names) > 1:  # every utterance of the evaluated splits together
        from .asr.evaluate import error_rates

        pooled = [r for name in names for r in rows[name]]
        result["pooled"] = error_rates([r["reference"] for r in pooled], [r["hypothesis"] for r in pooled])
    if out:
        report_skipped(out.parent, errors, lambda m: typer.echo(m, err=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "utterances": rows, "errors": errors}, indent=1))
        _evaluate_report(out.parent / out.stem, desc, data, names, result["splits"], rows)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"{'split':<14}{'utts':>6}{'CER %':>9}{'WER %':>9}")
        for name, m in [*result["splits"].items(), *([("(pooled)", result["pooled"])] if "pooled" in result else [])]:
            typer.echo(f"{name:<14}{m['utterances']:>6}{100 * m['cer']:>9.2f}{100 * m['wer']:>9.2f}")


@app.command("lm")
def language_model(
    out: Path = typer.Option(Path("out/lm/wordnet.arpa"), "--out", help="ARPA file to write."),
    order: int = typer.Option(3, "--order", help="Longest n-gram."),
    min_count: int = typer.Option(2, "--min-count", help="Leave out n-grams above order 1 seen fewer times."),
) -> None:
    """Estimate a word language model (interpolated Kneser-Ney) from WordNet's definitions and headwords
    (Debian's wordnet-base), for `evaluate --lm` and `transcribe --lm`; never from a corpus' sentences."""
    from .asr.lm import NgramLM
    from .corpus.lm_text import lm_sentences

    if order < 1 or min_count < 1:
        raise typer.BadParameter("--order and --min-count must be at least 1")
    try:
        text = lm_sentences()
    except FileNotFoundError as e:
        raise InputError("wordnet-base", str(e)) from None
    model = NgramLM.estimate(text, order=order, min_count=min_count)
    model.write_arpa(out)
    sizes = ", ".join(f"{len(p)} {n + 1}-grams" for n, p in enumerate(model.prob))
    typer.echo(f"{out}: {len(text)} sentences, {len(model.vocab)} words; {sizes}")


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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


app.command("ablate")(ablate)
app.command("sae")(sae)
app.command("findings")(findings_command)

featvis_app = typer.Typer(help="Feature visualization: inputs that maximize letters, channels or neurons.",
                          add_completion=False)
app.add_typer(featvis_app, name="featvis")


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
