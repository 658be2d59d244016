"""Copy a few hundred test and held-out-voice utterances of a synthesized corpus into the package
(`src/introspeech/data/demo_corpus`), the built-in corpus of the demo and the tests.

    python scripts/make_demo_corpus.py work/corpus --test 160 --heldout 80
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from introspeech.corpus import read_manifest, write_manifest

DEST = Path(__file__).resolve().parent.parent / "src" / "introspeech" / "data" / "demo_corpus"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--test", type=int, default=160)
    ap.add_argument("--heldout", type=int, default=80)
    args = ap.parse_args()
    if DEST.exists():
        shutil.rmtree(DEST)
    summary = {"source": json.loads((args.corpus / "corpus.json").read_text())["seed"], "splits": {}}
    for split, n in (("test", args.test), ("heldout", args.heldout)):
        utts = read_manifest(args.corpus / f"{split}.jsonl")
        # every synthesizer, in plan order: take the first n whose duration is moderate
        chosen = [u for u in utts if (u.duration or 0) <= 5.0][:n]
        (DEST / "audio" / split).mkdir(parents=True, exist_ok=True)
        for u in chosen:
            dst = DEST / "audio" / split / Path(u.audio_path).name
            shutil.copyfile(u.audio_path, dst)
            u.audio_path = dst
        write_manifest(DEST / f"{split}.jsonl", chosen)
        summary["splits"][split] = {"utterances": len(chosen), "minutes": round(sum(u.duration for u in chosen) / 60, 2)}
    summary["source"] = {"seed": summary["source"], "command": "introspeech synth --hours 11.2 --seed 0"}
    (DEST / "corpus.json").write_text(json.dumps(summary, indent=1))
    size = sum(f.stat().st_size for f in DEST.rglob("*") if f.is_file())
    print(json.dumps(summary), f"{size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
