"""CER per voice on one split (default: the held-out voices), worst first.

    python benchmarks/per_voice.py [--model M] [--corpus DIR] [--split heldout]

espeak voices are pooled over accents (``espeak+VARIANT``); festival and flite voices by name.
"""

from __future__ import annotations

import argparse
import collections

from introspeech.asr.checkpoint import load_model
from introspeech.asr.evaluate import error_rates, transcribe
from introspeech.corpus.load import load_corpus, load_features
from introspeech.text import normalize_text


def voice(speaker: str) -> str:
    return "espeak+" + speaker.split("+", 1)[1] if speaker.startswith("espeak") and "+" in speaker else speaker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--corpus")
    ap.add_argument("--split", default="heldout")
    a = ap.parse_args()
    model, features, _ = load_model(a.model)
    by: dict[str, tuple[list[str], list[str]]] = collections.defaultdict(lambda: ([], []))
    for u, f in load_features(load_corpus(a.corpus)[a.split], features):
        refs, hyps = by[voice(u.speaker)]
        refs.append(normalize_text(u.text).text)
        hyps.append(transcribe(model, f))
    rates = {k: error_rates(*v) for k, v in by.items()}
    for k in sorted(rates, key=lambda k: -rates[k]["cer"]):
        print(f"{k:32s} {rates[k]['utterances']:5d} utterances  CER {100 * rates[k]['cer']:5.1f} %")


if __name__ == "__main__":
    main()
