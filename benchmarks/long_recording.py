"""Long recordings: a 10-minute file through transcribe, attribute_frames and naps, in pieces vs whole.

The recording is the demo corpus' test utterances joined (0.3 s of silence between them) into one
FLAC file of ``--minutes`` minutes, with its transcript and phone alignment shifted to match. Each
measurement runs in a fresh child process and reports its peak resident memory (VmHWM) and time:

- ``transcribe``: the built-in model's scores, in pieces (the default, 6,000 frames) and whole;
- ``attribute``: gradient maps of every output frame as receptive-field windows, in pieces (the
  whole-input dense maps of 30,000 frames would take 192 GB; the whole run is compared on a
  sample of frames);
- ``naps``: NAPs of letters and phonemes in every layer plus letter and phoneme patterns, in
  pieces and whole (``max_frames=0``).

Pieces are compared with the whole run (largest absolute difference, and whether bit-identical),
and the piece runs are repeated at twice the length to show that their memory does not grow.

    python benchmarks/long_recording.py [--minutes 10] [--json out/bench/long_recording.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_recording(folder: Path, minutes: float) -> Path:
    """The demo corpus' test split joined into one utterance of ``minutes`` (manifest + FLAC)."""
    import soundfile as sf

    from introspeech.audio import SAMPLE_RATE, load_audio
    from introspeech.corpus.load import load_corpus
    from introspeech.corpus.manifest import write_manifest
    from introspeech.corpus.utterance import Segment, Utterance

    utts = load_corpus()["test"]
    gap = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    waves, texts, phones, t, k = [], [], [], 0.0, 0
    while t < minutes * 60:
        u = utts[k % len(utts)]
        k += 1
        w = load_audio(u.audio_path)
        waves += [w, gap]
        texts.append(u.text)
        phones += [Segment(s.start + t, s.end + t, s.label) for s in u.phones or []]
        t += (len(w) + len(gap)) / SAMPLE_RATE
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    path = folder / "audio" / "long.flac"
    sf.write(path, np.concatenate(waves), SAMPLE_RATE)
    utt = Utterance("long", path, " ".join(texts), duration=t, phones=phones)
    write_manifest(folder / "test.jsonl", [utt])
    (folder / "corpus.json").write_text(json.dumps({"splits": {"test": 1}}))
    from introspeech.asr.checkpoint import load_model
    from introspeech.corpus.load import utterance_features

    np.save(folder / "features.npy", utterance_features(utt, load_model()[1]))  # computed once, outside the children
    return folder


def _status(key: str) -> int:
    """A /proc/self/status entry in kB (VmHWM starts anew at exec, unlike ru_maxrss, which a child
    inherits from the process it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def child(what: str, folder: Path, max_frames: int) -> dict:
    """One measurement in this process: its result digest, time and peak memory."""
    import torch

    from introspeech.asr.checkpoint import load_model
    from introspeech.asr.evaluate import scores
    from introspeech.attribution.frames import attribute_frames
    from introspeech.corpus.load import load_corpus
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.settings import ProfileSettings

    torch.set_num_threads(1)
    model, cfg = load_model()[:2]
    utt = load_corpus(folder)["test"][0]
    feats = np.load(folder / "features.npy")
    base = _status("VmRSS")
    t0 = time.perf_counter()
    if what == "transcribe":
        s = scores(model, feats, max_frames)
        out = {"digest": s.numpy()}
    elif what == "attribute":
        x = torch.as_tensor(feats).unsqueeze(0)
        sample = list(range(0, x.shape[-1] // 2, 997))
        if max_frames:
            w = attribute_frames(model, x, "all", "predicted", "gradient", output="windows", max_frames=max_frames)
            out = {"digest": w.maps[sample].numpy(), "starts": w.starts[sample].numpy(), "frames": len(w),
                   "result_mb": round(w.maps.numel() * w.maps.element_size() / 2**20)}
        else:  # the whole run, on a sample of frames only (dense maps of every frame do not fit)
            w = attribute_frames(model, x, sample, "predicted", "gradient", output="windows", max_frames=0)
            out = {"digest": w.maps.numpy(), "starts": w.starts.numpy(), "frames": len(w)}
    else:
        acc = profile_corpus(model, cfg, [utt], ProfileSettings(max_frames=max_frames, relevance=""), strict=True,
                             loader=lambda _u, _c: feats)
        out = {"digest": np.concatenate([acc.arrays[k].ravel() for k in sorted(acc.arrays)])}
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    np.save(folder / f"{what}-{max_frames}.npy", out.pop("digest"))
    for k in ("starts",):
        if k in out:
            np.save(folder / f"{what}-{max_frames}-{k}.npy", out.pop(k))
    return {"seconds": round(seconds, 2), "peak_mb": round(peak / 1024), "above_model_mb": round((peak - base) / 1024),
            "input_frames": int(feats.shape[1]), **out}


def run_child(what: str, folder: Path, max_frames: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", what, str(folder), str(max_frames)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(folder: Path, what: str, a: int, b: int) -> dict:
    x, y = np.load(folder / f"{what}-{a}.npy"), np.load(folder / f"{what}-{b}.npy")
    return {"max_abs_diff": float(np.abs(x - y).max()), "max_rel_diff": float(np.abs(x - y).max() / np.abs(y).max()),
            "bit_identical": bool(np.array_equal(x, y))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--max-frames", type=int, default=6000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), int(args.child[2]))))
        return
    report: dict = {"minutes": args.minutes, "max_frames": args.max_frames}
    with tempfile.TemporaryDirectory() as tmp:
        one, two = make_recording(Path(tmp) / "one", args.minutes), make_recording(Path(tmp) / "two", 2 * args.minutes)
        for what in ("transcribe", "attribute", "naps"):
            r = {"pieces": run_child(what, one, args.max_frames), "whole": run_child(what, one, 0),
                 "pieces_twice_as_long": run_child(what, two, args.max_frames)}
            if what == "attribute":  # the whole run explained only the sampled frames
                p = np.load(one / f"attribute-{args.max_frames}.npy")
                w = np.load(one / "attribute-0.npy")
                same_starts = np.array_equal(np.load(one / f"attribute-{args.max_frames}-starts.npy"),
                                             np.load(one / "attribute-0-starts.npy"))
                width = min(p.shape[-1], w.shape[-1])
                d = np.abs(p[..., :width] - w[..., :width]).max()
                r["vs_whole"] = {"max_abs_diff": float(d), "max_rel_diff": float(d / np.abs(w).max()),
                                 "same_windows": same_starts, "sampled_frames": int(p.shape[0])}
            else:
                r["vs_whole"] = compare(one, what, args.max_frames, 0)
            report[what] = r
            print(json.dumps({what: r}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
