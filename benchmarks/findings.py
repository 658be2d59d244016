"""Time of `introspeech findings` per model and stage on the real corpus (and, with --synthetic, the
demo corpus' test split), and the cost of the frame-sampling pass against plain inference on the
same utterances (Whisper: the encoder on its 30 s window, statistics on the speech frames only).

    python benchmarks/findings.py [--out out/bench/findings] [--models builtin,hama,whisper-tiny.en]
        [--corpus work/realspeech] [--synthetic] [--json out/bench/findings.json]

Stages already in OUT are read back (``--resume``); pass a fresh OUT to time everything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def sampling_ratio(desc, utts, per_utterance: int) -> dict:
    """Seconds of the frame-sampling pass and of plain inference over the same utterances."""
    from introspeech.corpus.load import utterance_features
    from introspeech.representations.sampling import sample_frames

    feats = [torch.as_tensor(utterance_features(u, desc.features))[None] for u in utts]
    t0 = time.perf_counter()
    with torch.no_grad():
        for x in feats:
            desc.module(x.to(next(desc.module.parameters()).dtype))
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample_frames(desc, utts, per_utterance)
    sampled = time.perf_counter() - t0
    return {"plain_s": plain, "sampling_s": sampled, "ratio": sampled / plain, "utterances": len(utts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/bench/findings"))
    ap.add_argument("--models", default="builtin,hama,whisper-tiny.en")
    ap.add_argument("--corpus", type=Path, default=Path("work/realspeech"))
    ap.add_argument("--synthetic", action="store_true", help="also the demo corpus' test split")
    ap.add_argument("--ratio-utterances", type=int, default=40, help="utterances of the sampling-cost measurement")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from introspeech.cli_findings import REAL_SPLITS
    from introspeech.corpus.load import load_corpus
    from introspeech.findings.methods import spaced
    from introspeech.findings.run import FindingsSettings, run_findings
    from introspeech.models.loading import load_description

    real = load_corpus(args.corpus)
    corpora = {"real": [u for s in REAL_SPLITS.split(",") for u in real.get(s, []) if u.phones]}
    if args.synthetic:
        corpora["synthetic"] = [u for u in load_corpus(None)["test"] if u.phones]
    names = args.models.split(",")
    result: dict = {"utterances": {c: len(u) for c, u in corpora.items()}, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    skipped: list[str] = []
    summary = run_findings({m: (lambda m=m: load_description(None if m == "builtin" else m)) for m in names}, corpora,
                           args.out, FindingsSettings(), resume=True, progress=lambda m: print(m, flush=True),
                           on_error=lambda u, e: skipped.append(f"{u.id}: {e}"))
    result["skipped"] = sorted(set(skipped))  # e.g. a clip longer than a model reads at once (hama, Whisper: 30 s)
    result["wall_s"] = time.perf_counter() - t0
    result["seconds"] = summary["seconds"]
    result["per_model_s"] = {m: sum(s for c in cs.values() for s in c.values()) for m, cs in summary["seconds"].items()}
    result["total_stage_s"] = sum(result["per_model_s"].values())
    result["sampling_vs_plain"] = {m: sampling_ratio(load_description(None if m == "builtin" else m),
                                                     spaced(corpora["real"], args.ratio_utterances), 30) for m in names}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
