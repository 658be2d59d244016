"""Train the recognizer from packed features (`introspeech.asr.packed`), e.g. on a GPU machine that
has neither the corpus audio nor the audio libraries.

    python scripts/train_packed.py PACKED_DIR [PACKED_DIR ...] --out MODEL_DIR --device cuda \
        --epochs 40 --init src/introspeech/data/model/default --lr 1e-3 --vtlp 0.12

Several folders (parts of one corpus, e.g. sent separately) are concatenated per split. The loop is
`introspeech.asr.train.train_arrays`, the same as `introspeech train`; only the data source differs.
``--calibrate N`` times N steps first and prints seconds per epoch, then exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from introspeech.asr.packed import load_packed  # noqa: E402
from introspeech.asr.train import TrainConfig, feature_config_for, make_batches, train_arrays  # noqa: E402
from introspeech.text import encode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("packed", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-frames", type=int, default=16000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--vtlp", type=float, default=0.12)
    ap.add_argument("--init", default="")
    ap.add_argument("--freq-masks", type=int, default=2)
    ap.add_argument("--freq-width", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-valid", type=int, default=300)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--calibrate", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()

    t0 = time.perf_counter()
    splits: dict[str, list] = {}
    for p in a.packed:
        _, got = load_packed(p)
        for k, v in got.items():
            splits.setdefault(k, []).extend(v)
    data = [(f, encode(t)) for t, f in splits.get("train", [])]
    valid = [(t, f) for t, f in splits.get("valid", [])][: a.max_valid]
    frames = sum(f.shape[1] for f, _ in data)
    hours = frames / feature_config_for("default").frame_rate / 3600
    summary = {"path": " ".join(a.packed), "train_utterances": len(data), "valid_utterances": len(valid),
               "train_hours": round(hours, 3), "packed": True}
    print(f"loaded {len(data)} train / {len(valid)} valid utterances ({summary['train_hours']} h) "
          f"in {time.perf_counter() - t0:.1f} s on {a.device}", flush=True)
    cfg = TrainConfig(preset="default", epochs=a.epochs, batch_frames=a.batch_frames, lr=a.lr, warmup_steps=a.warmup,
                      seed=a.seed, vtlp=a.vtlp, init=a.init, freq_masks=a.freq_masks, freq_width=a.freq_width,
                      max_valid=a.max_valid, checkpoint_minutes=2.0)
    if a.calibrate:
        steps = len(make_batches([f.shape[1] for f, _ in data], a.batch_frames, torch.Generator().manual_seed(0)))
        t = time.perf_counter()
        train_arrays(data, [], summary, Path(a.out) / "calibrate", cfg, device=a.device, max_steps=a.calibrate)
        per = (time.perf_counter() - t) / a.calibrate
        print(json.dumps({"seconds_per_step": per, "steps_per_epoch": steps, "seconds_per_epoch": per * steps}))
        return

    def log(entry: dict) -> None:
        print(json.dumps(entry), flush=True)

    res = train_arrays(data, valid, summary, a.out, cfg, minutes=a.minutes, resume=a.resume, log=log,
                       device=a.device)
    print(json.dumps({"best_cer": res["state"]["best_cer"], "stopped_early": res["stopped_early"],
                      "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
