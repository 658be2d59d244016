"""Synthesis throughput: hours of audio (FLAC + log-Mel features + alignments) per wall minute.

Requirements on 2 cores: the classic synthesizers, >= 10 h of training audio in <= 15 minutes;
Kokoro's neural voices (``--kokoro``), >= 1.5x real time (audio seconds per wall second).

    python benchmarks/synth_throughput.py --out work/corpus --hours 11.2 --json out/synth.json
    python benchmarks/synth_throughput.py --quick          # 0.2 h into a temporary folder
    python benchmarks/synth_throughput.py --kokoro --quick # Kokoro with 8 blends, 0.2 h
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from introspeech.corpus.synth.driver import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="corpus folder (default: a temporary folder)")
    ap.add_argument("--hours", type=float, default=11.2, help="total hours; 90%% of it is training audio")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="0.2 h only")
    ap.add_argument("--kokoro", action="store_true", help="Kokoro's English voices and 8 blends")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    hours = 0.2 if args.quick else args.hours
    kokoro = {"kokoro": True, "blends": 8} if args.kokoro else {}
    with tempfile.TemporaryDirectory() as tmp:
        s = synthesize(args.out or Path(tmp), hours, args.seed, args.workers, **kokoro)
    train_h = s["hours"]["train"]
    result = {
        "synthesizer": "kokoro" if args.kokoro else "espeak, flite, festival",
        "requirement": ">= 1.5x real time" if args.kokoro else ">= 10 train hours per 15 min",
        "hours_total": round(sum(s["hours"].values()), 3), "hours_train": train_h, "workers": s["workers"],
        "wall_minutes": round(s["wall_seconds"] / 60, 2),
        "train_hours_per_15_min": round(train_h / (s["wall_seconds"] / 900), 2),
        "realtime_factor": s["audio_seconds_per_second"], "failed": s["failed"],
        "cmudict_agreement": s["cmudict_agreement"], "utterances": s["utterances"],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
