"""Choose a point between a base checkpoint and its fine-tuned successor (WiSE-FT) on validation
data only, and write it as a checkpoint.

    python scripts/interpolate_checkpoints.py --base src/introspeech/data/model/default \
        --tuned work/model_k2/model --alphas 0.5,0.6,0.7,0.8,0.9,1.0 \
        --bound work/std_clean:valid=0.10 --report work/kokoro8:valid --out work/model_wise

Every alpha is evaluated (greedy CER) on each ``--bound CORPUS:SPLIT=MAX`` and ``--report
CORPUS:SPLIT``; the chosen one is the largest alpha (closest to the tuned model) whose CER is at
most MAX on every bound. Nothing of a test split is read. The checkpoint's JSON records the two
models, every alpha's CERs and the choice (``interpolation``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from introspeech.asr.checkpoint import load_model, save_checkpoint
from introspeech.asr.evaluate import evaluate_split
from introspeech.asr.interpolate import interpolate_models
from introspeech.corpus.load import load_corpus


def split_of(spec: str) -> tuple[str, str, list]:
    corpus, _, split = spec.partition(":")
    held = load_corpus(Path(corpus))
    if split not in held:
        sys.exit(f"{corpus}: no split {split!r} (has {sorted(held)})")
    return corpus, split, held[split]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--tuned", required=True)
    ap.add_argument("--alphas", default="0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--bound", action="append", default=[], help="CORPUS:SPLIT=MAX_CER (repeatable)")
    ap.add_argument("--report", action="append", default=[], help="CORPUS:SPLIT, measured only (repeatable)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base, cfg, _ = load_model(a.base)
    tuned, tuned_cfg, tuned_meta = load_model(a.tuned)
    if tuned_cfg != cfg:
        sys.exit(f"{a.tuned}: other features than {a.base}")
    bounds = [(*split_of(b.rpartition("=")[0]), float(b.rpartition("=")[2])) for b in a.bound]
    reports = [split_of(r) for r in a.report]
    rows = []
    for alpha in sorted(float(x) for x in a.alphas.split(",")):
        model = interpolate_models(base, tuned, alpha)
        row = {"alpha": alpha}
        for corpus, split, utts, *_ in [*bounds, *reports]:
            row[f"{corpus}:{split}"] = evaluate_split(model, cfg, utts)[0]["cer"]
        row["within_bounds"] = all(row[f"{c}:{s}"] <= mx for c, s, _, mx in bounds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r for r in rows if r["within_bounds"]]
    if not ok:
        sys.exit("no alpha keeps every bound; nothing written")
    chosen = max(ok, key=lambda r: r["alpha"])
    meta = {k: v for k, v in tuned_meta.items() if k not in ("format", "model", "features", "alphabet")}
    meta["interpolation"] = {"base": a.base, "tuned": a.tuned, "alpha": chosen["alpha"], "rule": "largest alpha "
                             "within every bound", "bounds": {f"{c}:{s}": mx for c, s, _, mx in bounds}, "rows": rows}
    save_checkpoint(a.out, interpolate_models(base, tuned, chosen["alpha"]), cfg, meta)
    print(f"alpha {chosen['alpha']} -> {a.out}")


if __name__ == "__main__":
    main()
