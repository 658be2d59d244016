"""Make a trained checkpoint the built-in model, keeping the lineage: the shipped model's lineage
list plus one entry for the new run (what, the command, every stage's training settings and
best validation CER, the WiSE-FT choice when the checkpoint has one).

    python scripts/ship_model.py --model work/model_wise --what "..." --command "..." \
        --stage candidates/real_voice/part0 ... --stage work/model_k2/model

Refuses a checkpoint of another architecture or features than the shipped one (the README's
numbers and the tests' layouts assume it), and writes nothing then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from introspeech.asr.checkpoint import builtin_model, load_model, read_meta, save_checkpoint


def stage_of(path: str) -> dict:
    """One training stage as the lineage keeps it: its settings and how it ended."""
    meta = read_meta(path)
    state = meta.get("state", {})
    return {"checkpoint": path, "train": meta.get("train"), "corpus": meta.get("corpus"),
            "epochs_run": state.get("epoch"), "best_valid_cer": state.get("best_cer"),
            "train_seconds": state.get("train_seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the checkpoint to ship")
    ap.add_argument("--what", required=True, help="one line: how it was made")
    ap.add_argument("--command", required=True, help="the command that remakes it")
    ap.add_argument("--stage", action="append", default=[], help="checkpoint of one training stage, in order")
    a = ap.parse_args()
    shipped, shipped_cfg, old = load_model(builtin_model())
    net, cfg, meta = load_model(a.model)
    if net.config != shipped.config or cfg != shipped_cfg:
        sys.exit(f"{a.model}: another architecture or features than the built-in model; not shipped")
    lineage = list(old.get("lineage", []))
    entry = {"run": len(lineage) + 1, "what": a.what, "command": a.command,
             "stages": [stage_of(s) for s in a.stage]}
    if "interpolation" in meta:  # its base, when the built-in model, is the run before this one
        entry["interpolation"] = dict(meta["interpolation"])
        if Path(entry["interpolation"]["base"]).resolve() == builtin_model().resolve():
            entry["interpolation"]["base"] = f"run {len(lineage)} (the built-in model before this one)"
    extra = {k: v for k, v in meta.items() if k not in ("format", "model", "features", "alphabet", "lineage")}
    extra["lineage"] = [*lineage, entry]
    save_checkpoint(builtin_model(), net, cfg, extra)
    print(f"{a.model} -> {builtin_model()} (lineage run {entry['run']})")


if __name__ == "__main__":
    main()
