"""`introspeech` commands that make and read speech: synth, train, pack, realspeech, transcribe,
evaluate, lm (registered on the app in `cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .cli_support import (
    _ALPHABET,
    _BEAM,
    _FEATURES,
    _LM,
    _LM_WEIGHT,
    _MAX_FRAMES,
    _MODEL_FACTORY,
    _WEIGHTS,
    _WORD_BONUS,
    _beam_decoder,
    _decoder,
    _evaluate_report,
    _packaged_transcriber,
    _print_phone_errors,
    _progress,
    _recognizer,
    _recognizer_description,
)
from .errors import InputError, report_skipped


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
