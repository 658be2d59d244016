"""Forced letter alignment vs the corpus' true word onsets (share of words within 50 ms).

CTC emits a word's first letter a roughly constant delay after the word starts. Besides the raw
figure, the onsets are corrected by that delay, estimated (median) on the *other* split, so no
split is scored with a constant fitted on itself.

    python benchmarks/forced_alignment.py [--model M] [--corpus DIR] [--splits test,heldout] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from introspeech.asr.align import align_utterance, onset_summary, word_onset_errors
from introspeech.asr.checkpoint import load_model
from introspeech.corpus.load import load_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--corpus")
    ap.add_argument("--splits", default="test,heldout")
    ap.add_argument("--limit", type=int, default=0, help="utterances per split (0: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model, cfg, _ = load_model(args.model)
    data = load_corpus(args.corpus)
    import numpy as np

    splits = args.splits.split(",")
    signed = {}
    for split in splits:
        errors = []
        for u in data[split][: args.limit or None]:
            errors += word_onset_errors(model, cfg, align_utterance(model, cfg, u))
        signed[split] = errors
    result = {}
    for split in splits:
        others = [e for s in splits if s != split for e in signed[s]] or signed[split]
        delay = float(np.median(others))
        result[split] = {"raw": onset_summary(signed[split]),
                         "delay_corrected": {**onset_summary(signed[split], delay=delay), "delay_ms": delay * 1000}}
        print(split, json.dumps(result[split]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
