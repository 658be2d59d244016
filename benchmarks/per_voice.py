"""CER per voice on one split (default: the held-out voices), worst first.

    python benchmarks/per_voice.py [--model M] [--corpus DIR] [--split heldout] [--warp 0.9 1.0 1.1]

espeak voices are pooled over accents (``espeak+VARIANT``); festival and flite voices by name.
``--warp``: one column per fixed vocal-tract-length warp of the features (`vtlp_warp`), to tell
a voice whose formants sit outside the training range (some warp helps) from one that differs
otherwise (no warp helps).
"""

from __future__ import annotations

import argparse
import collections

import torch

from introspeech.asr.checkpoint import load_model
from introspeech.asr.evaluate import error_rates, transcribe
from introspeech.asr.train import vtlp_warp
from introspeech.corpus.load import load_corpus, load_features
from introspeech.text import normalize_text


def voice(speaker: str) -> str:
    return "espeak+" + speaker.split("+", 1)[1] if speaker.startswith("espeak") and "+" in speaker else speaker


def family(voice_name: str) -> str:
    """The synthesizer of a `voice` name."""
    return voice_name.split("+")[0].split(":")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--corpus")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--warp", type=float, nargs="*", default=[1.0], help="fixed warp factors (1.0: none)")
    a = ap.parse_args()
    model, features, _ = load_model(a.model)
    refs: dict[str, list[str]] = collections.defaultdict(list)
    hyps: dict[tuple[str, float], list[str]] = collections.defaultdict(list)
    for u, f in load_features(load_corpus(a.corpus)[a.split], features):
        refs[voice(u.speaker)].append(normalize_text(u.text).text)
        x = torch.as_tensor(f, dtype=torch.float32).unsqueeze(0)
        for w in a.warp:
            warped = x if w == 1.0 else vtlp_warp(x, features, None, 0.0, alpha=torch.tensor([w]))
            hyps[voice(u.speaker), w].append(transcribe(model, warped[0]))
    cer = {(k, w): 100 * error_rates(refs[k], hyps[k, w])["cer"] for k in refs for w in a.warp}
    print(f"{'voice':32s} {'utterances':>10s} " + " ".join(f"CER@{w:<5g}" for w in a.warp))
    for k in sorted(refs, key=lambda k: -cer[k, a.warp[0]]):
        print(f"{k:32s} {len(refs[k]):10d} " + " ".join(f"{cer[k, w]:8.1f}" for w in a.warp))
    print("pooled per synthesizer:")
    for synth in sorted({family(k) for k in refs}):
        mine = [k for k in refs if family(k) == synth]
        pooled = [100 * error_rates([r for k in mine for r in refs[k]], [h for k in mine for h in hyps[k, w]])["cer"]
                  for w in a.warp]
        print(f"{synth:32s} {sum(len(refs[k]) for k in mine):10d} " + " ".join(f"{c:8.1f}" for c in pooled))


if __name__ == "__main__":
    main()
