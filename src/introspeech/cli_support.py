"""What the commands share: option definitions, the model and data an analysis runs on (the
built-in model, a checkpoint or a user's model), the profile runs, and the commands' own reports."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .asr.beam import BeamSettings
from .errors import InputError, report_skipped


def _progress(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="utt")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


_MODEL_FACTORY = typer.Option(None, "--model-factory", help="Your own model: MODULE:FUNCTION returning the nn.Module "
                              "(importable from the working directory or PYTHONPATH), instead of --model.")
_WEIGHTS = typer.Option(None, "--weights", help="With --model-factory: weights as FILE.safetensors (never a pickle).")
_ALPHABET = typer.Option(None, "--alphabet", help="With --model-factory: output symbols as a string or JSON list, blank "
                         "'<b>' (default: the built-in 29, blank last).")
_FEATURES = typer.Option(None, "--features", help="With --model-factory: feature preset name or JSON FeatureConfig "
                         "(default: the built-in model's).")


def _description(model, factory=None, weights=None, alphabet=None, features=None, layers=None):
    from .models.loading import load_description

    return load_description(model, factory, weights, alphabet, features, layers)


def _recognizer_description(model, factory, weights, alphabet, features, builtin_alphabet: bool = False):
    """A CTC recognizer (``builtin_alphabet``: over the built-in 29 symbols, as the demo's sections need)."""
    from .text import SYMBOLS

    desc = _description(model, factory, weights, alphabet, features)
    if desc.output.kind != "ctc":
        what = "an encoder's frames (Whisper: naps --groups phonemes, layers, transcribe)" \
            if desc.output.kind == "encoder" else desc.output.kind
        raise InputError("--model-factory" if factory else "--model",
                         f"this command needs a CTC recognizer; {desc.name}'s output is {what}")
    if builtin_alphabet and desc.output.alphabet != SYMBOLS:
        raise InputError("--alphabet", "the demo's sections decode with the built-in alphabet (29 symbols, blank "
                                       f"last); this model's output has {len(desc.output.alphabet)} symbols")
    return desc


def _decoder(desc):
    """The greedy decoder of a recognizer's alphabet (None: the built-in one)."""
    from .text import SYMBOLS

    return None if desc.output.alphabet == SYMBOLS else desc.output.decode


def _evaluate_report(folder: Path, desc, data: dict, names: list[str], metrics: dict, rows: dict) -> None:
    """``evaluate``'s own report: the error rates and the first evaluated utterance's posteriors."""
    from .report.html import write_report
    from .report.sections.asr import asr_section

    done = {r["id"] for name in names for r in rows.get(name, [])}
    sample = next((u for name in names for u in data[name] if u.id in done), None)
    if sample is None:
        return
    section, _ = asr_section(desc, desc.features, {}, {n: data[n] for n in names}, sample, folder, metrics=metrics)
    write_report(folder, [section], title="introspeech: evaluation")


def _packaged_transcriber(model, lm):
    """The transcriber of a packaged model that is not a CTC recognizer (Whisper), else None."""
    from .models.packaged import PACKAGED

    entry = PACKAGED.get(str(model)) if model is not None and not Path(model).exists() else None
    if entry is None or entry.text is None:
        return None
    if lm is not None:
        raise InputError("--lm", f"{entry.name} decodes with its own decoder; --lm fuses a word model into CTC decoding")
    if not entry.installed:
        raise InputError(entry.name, f"not installed: {entry.install}")
    return entry.text()


def _recognizer(model, factory, weights, alphabet, features):
    desc = _recognizer_description(model, factory, weights, alphabet, features)
    return desc.module, desc.features, _decoder(desc)


def _profile_run(model, corpus, splits, out, settings, engine, workers, scheduler, save_every, resume, replot,
                 own: dict | None = None):
    """Accumulate (or, with ``replot``, load) the sums of `introspeech.profiles` into OUT; ``own``:
    the --model-factory/--weights/--alphabet/--features options."""
    from .profiles import results
    from .profiles.engine import profile_corpus

    if replot:
        return results.load(out)
    from .corpus.load import load_corpus

    own = own or {}
    desc = _description(model, own.get("factory"), own.get("weights"), own.get("alphabet"), own.get("features"))
    if own.get("predicted_symbols") and desc.output.kind != "ctc":
        raise InputError("--model", f"{desc.name}'s output is {desc.output.kind!r}, not per-frame symbols: patterns "
                         "average the input around the frames where a CTC output emits each symbol")
    if own.get("predicted_symbols") and not desc.output.spells and settings.letters_from == "reference":
        import dataclasses

        settings = dataclasses.replace(settings, letters_from="prediction")
        typer.echo(f"{desc.name} emits phonemes: its symbols' patterns are aligned on its own predictions", err=True)
    data = load_corpus(corpus)
    names = list(data) if splits == "all" else [s for s in splits.split(",") if s]
    for name in names:
        if name not in data:
            raise typer.BadParameter(f"corpus has no split {name!r} (has {sorted(data)})", param_hint="--splits")
    utts = [u for name in names for u in data[name]]
    update, bar = _progress("profiles")
    acc = profile_corpus(desc, desc.features, utts, settings, state_dir=out / "state", resume=resume, engine=engine,
                         workers=workers, scheduler=scheduler, shard_size=save_every, progress=update,
                         strict=own.get("strict", False))
    bar.close()
    results.save(acc, out, desc.config or {k: str(v) for k, v in own.items() if v is not None and k != "strict"})
    report_skipped(out, acc.errors, lambda m: typer.echo(m, err=True))
    if not acc.utterances:
        raise InputError(corpus or "the built-in corpus", f"no utterance could be profiled ({len(acc.errors)} skipped, "
                                                          f"listed in {out / 'skipped.tsv'})")
    return acc


def _settings(cls, **kw):
    from .attribution.definitions import method as method_record

    try:
        if kw.get("relevance"):
            method_record(kw["relevance"])
        return cls(**kw)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


_PROFILE_OUT = typer.Option(..., "--out", help="Output folder: profiles.{npz,json}, summary.json, figures, index.html.")
_MODEL = typer.Option(None, "--model", help="Checkpoint (default: the built-in model).")
_CORPUS = typer.Option(None, "--corpus", help="Corpus (default: the built-in demo corpus); naps also takes 'digits' "
                       "(an image classifier from --model-factory on scikit-learn's digits).")
_SPLITS = typer.Option("test", "--splits", help="Comma-separated splits, or 'all'.")
_ENGINE = typer.Option("local", "--engine", help="local (in process) or dask.")
_WORKERS = typer.Option(2, "--workers", help="Dask: worker processes of a local cluster.")
_SCHEDULER = typer.Option(None, "--scheduler", help="Dask: address of an existing scheduler (workers must see the corpus).")
_SAVE_EVERY = typer.Option(64, "--save-every", help="Utterances per shard; the state is saved after shards.")
_RESUME = typer.Option(False, "--resume", help="Continue an interrupted run from OUT/state (bit-identical result).")
_REPLOT = typer.Option(False, "--replot", help="Only redraw figures and summary from OUT/profiles.* (no model run).")
_MAX_FRAMES = typer.Option(6000, "--max-frames", help="Longer recordings run in overlapping pieces of this many "
                           "feature frames (the same results, memory bounded; 0: always whole).")
_THREADS = typer.Option(1, "--threads", help="Torch threads per process (results depend on it bit-wise).")
_LM = typer.Option(None, "--lm", help="Word language model (ARPA file, e.g. from `introspeech lm`) fused into a CTC "
                   "prefix beam search (default: greedy decoding).")
_BEAM = typer.Option(0, "--beam", help=f"Hypotheses of the prefix beam search (default: 0, greedy; {BeamSettings.beam} "
                     "with --lm).")
_LM_WEIGHT = typer.Option(BeamSettings.alpha, "--lm-weight", help="Weight of the language model's log probability (alpha).")
_WORD_BONUS = typer.Option(BeamSettings.beta, "--word-bonus", help="Score added per word (beta).")
_STRICT = typer.Option(False, "--strict", help="Stop at the first bad utterance (default: skip it and list it in "
                       "OUT/skipped.tsv).")


def _class_naps(out: Path, model, own: dict, metric: str) -> None:
    """``naps --corpus digits``: class-conditional activation profiles of an image classifier on the
    test split of scikit-learn's digits (``(N, 1, 8, 8)`` in [0, 1])."""
    import numpy as np

    from .models.description import Output
    from .models.loading import load_description
    from .profiles.images import class_profiles
    from .report.html import write_report
    from .report.sections.classes import class_profiles_section, class_summary
    from .sanity.digits import digits

    if own.get("factory") is None:
        raise InputError("--corpus", "digits are images: give an image classifier with --model-factory")
    _, _, x, y = digits(0)
    desc = load_description(model, own["factory"], own.get("weights"), None, None, example=x[:1],
                            output=Output("classes", tuple(str(i) for i in range(10)), None))
    prof = class_profiles(desc, x.to(next(desc.module.parameters()).dtype), y)
    summary = class_summary(prof, metric)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "profiles.npz", **{f"{layer}/{k}": v for layer, a in prof.arrays.items() for k, v in a.items()})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_report(out, [class_profiles_section(prof, out, summary, metric)],
                 title="introspeech: class activation profiles")
    typer.echo(json.dumps({"findings": summary["findings"], "examples": summary["examples"]}, indent=1))


def _pattern_wavs(acc, corpus, splits: str, out: Path) -> None:
    """OUT/audio/letter_X.wav for the aligned (else nominal) raw pattern of every letter seen ≥ 20 times."""
    import numpy as np

    from .corpus.load import load_corpus
    from .featvis.run import pattern_audio
    from .profiles import results

    align = "aligned" if "pattern/letters/aligned/sum" in acc.arrays else "nominal"
    raw, _ = results.patterns(acc, "letters", align)
    spoken = {" ": "space", "'": "apostrophe"}
    names = acc.layout.groups("letters")
    pats = {f"letter_{spoken.get(names[i], names[i])}": raw[i]
            for i in results.present(acc, "letters", 20) if not np.isnan(raw[i]).any()}
    data = load_corpus(corpus)
    utts = [u for name in (list(data) if splits == "all" else splits.split(",")) if name in data for u in data[name]]
    if pats and utts:
        from .errors import InputError

        try:
            pattern_audio(pats, acc.features, utts, out / "audio")
        except InputError as e:  # e.g. a corpus of cached features without audio: the results are saved
            typer.echo(f"no pattern audio: {e}", err=True)


def _speech_data(model, corpus, split: str, window: int | None, own: dict | None = None):
    from .corpus.load import load_corpus
    from .featvis.run import SpeechData

    own = own or {}
    desc = _description(model, own.get("factory"), own.get("weights"), own.get("alphabet"), own.get("features"))
    data = load_corpus(corpus)
    if split not in data:
        raise typer.BadParameter(f"corpus has no split {split!r} (has {sorted(data)})", param_hint="--split")
    rf = desc.output_geometry.rf
    return desc, SpeechData(desc.features, data[split], window or -(-rf // 4) * 4)


def _default_prior(model: Path | None) -> Path:
    """A prior is saved with its model (``MODEL.prior.*``); the built-in model's lives in out/featvis."""
    if model is None:
        return Path("out/featvis/prior")
    return model.with_name(model.name.removesuffix(".safetensors").removesuffix(".json") + ".prior")



def _beam_decoder(lm: Path | None, beam: int, weight: float, bonus: float, decode) -> tuple[object, dict]:
    """The decoder the --lm/--beam options ask for (None: greedy) and its description for JSON."""
    if lm is None and beam == 0:
        return None, {"kind": "greedy"}
    if decode is not None:
        raise InputError("--lm" if lm is not None else "--beam",
                         "beam search reads the built-in alphabet; a model with its own --alphabet decodes greedily")
    if beam < 0:
        raise typer.BadParameter(f"must be at least 0, got {beam}", param_hint="--beam")
    from .asr.beam import BeamDecoder
    from .asr.lm import NgramLM

    model = NgramLM.read_arpa(lm) if lm is not None else None
    settings = BeamSettings(beam=beam or BeamSettings.beam, alpha=weight if model else 0.0, beta=bonus if model else 0.0,
                            unk_penalty=BeamSettings.unk_penalty if model else 0.0)
    try:
        searcher = BeamDecoder(model, settings)
    except ValueError as e:
        raise InputError(lm, str(e)) from None
    return searcher, {"kind": "beam", "lm": str(lm) if lm else None, **vars(settings)}


def _print_phone_errors(result: dict, rows: dict, names: list[str], out: Path | None, errors: list[str],
                        as_json: bool) -> None:
    """``evaluate``'s output for a phoneme recognizer: PER per split (and pooled), JSON beside --out."""
    import jiwer

    pooled = [r for name in names for r in rows[name]]
    if len(names) > 1 and pooled:
        result["pooled"] = {"per": float(jiwer.wer([r["reference"] for r in pooled], [r["hypothesis"] for r in pooled])),
                            "utterances": len(pooled)}
    if out:
        report_skipped(out.parent, errors, lambda m: typer.echo(m, err=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "utterances": rows, "errors": errors}, indent=1))
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{'split':<14}{'utts':>6}{'PER %':>9}")
    for name, m in [*result["splits"].items(), *([("(pooled)", result["pooled"])] if "pooled" in result else [])]:
        typer.echo(f"{name:<14}{m['utterances']:>6}{100 * m['per']:>9.2f}")
