"""Global introspection at corpus scale: cost of NAP + pattern accumulation, Dask scaling, memory.

1. Overhead (twice: whole runs, and utterance by utterance, see `paired`): accumulation (NAPs of
   letters and phonemes in every layer, nominal letter patterns and
   phoneme patterns; the forced alignment included), without and with windowed NAPs, over the
   built-in demo corpus, vs plain inference (the forward pass of each utterance) over the same
   corpus, both with features preloaded in memory and the same torch threads (1); paired per
   chunk of 120 utterances, best of ``--repeats`` per chunk. A third variant adds the relevance
   alignment of every emitted letter (gradient maps from the cone engine, windowed NAPs on);
   `relevance_flops` counts its arithmetic floor.
2. Dask: 2 worker processes vs 1 on the test split of ``--corpus`` (default work/corpus, else the
   demo corpus), clusters started before timing (start-up reported separately).
3. Memory: peak RSS of a child process accumulating N and 2N utterances.
4. Stages: where the accumulation's time goes, per utterance (`stages`).

5. ``--whisper N``: NAPs of phonemes in Whisper tiny.en's encoder (front end, convolutions, four
   blocks; windowed, padding frames excluded) over N utterances of the demo corpus vs the
   encoder's plain inference on the same 30 s windows, paired per utterance, best of ``--repeats``.

Goals: NAPs + patterns <= 1.15x plain inference, relevance alignment <= 4x, Dask 2 vs 1 >= 1.7x, memory flat;
Whisper's encoder NAPs <= 1.3x its plain inference.

    python benchmarks/profiles.py [--quick] [--json out/bench/profiles.json] [--corpus DIR]
    python benchmarks/profiles.py --whisper 40 --repeats 3 --json out/bench/profiles_whisper.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


class Preloaded:
    """A picklable loader that serves features from memory (by utterance id)."""

    def __init__(self, feats: dict[str, object]):
        self.feats = feats

    def __call__(self, utt, cfg):
        return self.feats[utt.id]


def _setup(corpus, splits):
    from introspeech.asr.checkpoint import load_model
    from introspeech.corpus.load import load_corpus, utterance_features

    net, cfg, _ = load_model()
    data = load_corpus(corpus)
    utts = [u for s in splits if s in data for u in data[s]]
    return net, cfg, utts, Preloaded({u.id: utterance_features(u, cfg) for u in utts})


def _plain(net, utts, loader, cfg) -> float:
    t = time.perf_counter()
    with torch.no_grad():
        for u in utts:
            net(torch.as_tensor(loader(u, cfg)).unsqueeze(0))
    return time.perf_counter() - t


def overhead(repeats: int, quick: bool, chunk: int = 120) -> dict:
    """Paired timing: the corpus is cut into chunks, and each chunk runs plain inference and every
    variant back to back, ``repeats`` times; each (variant, chunk) keeps its fastest run. Machine
    speed here drifts by ±30 % within minutes, and pairing per chunk keeps the drift out of the ratios."""
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.settings import ProfileSettings

    net, cfg, utts, loader = _setup(None, ["test", "heldout"])
    if quick:
        utts = utts[:48]
    torch.set_num_threads(1)
    variants = {"naps_and_patterns": ProfileSettings(relevance="", nap_window=0, threads=1),
                "with_windowed_naps": ProfileSettings(relevance="", threads=1)}
    relevance = ProfileSettings(relevance="gradient", threads=1)
    for s in (*variants.values(), relevance):
        profile_corpus(net, cfg, utts[:4], s, loader=loader)  # compile the kernels, warm caches
    chunks = [utts[i:i + chunk] for i in range(0, len(utts), chunk)]
    best: dict[str, list[float]] = {k: [float("inf")] * len(chunks) for k in ("plain", *variants)}
    for _ in range(repeats):
        for c, part in enumerate(chunks):
            for name in best:
                t = time.perf_counter()
                if name == "plain":
                    _plain(net, part, loader, cfg)
                else:
                    profile_corpus(net, cfg, part, variants[name], loader=loader)
                best[name][c] = min(best[name][c], time.perf_counter() - t)
    # The relevance alignment's large temporaries slow a plain pass that follows them, so it runs
    # in a loop of its own, against the plain times above (which it cannot have slowed).
    best["with_relevance_alignment"] = [float("inf")] * len(chunks)
    for _ in range(max(1, repeats // 2)):
        for c, part in enumerate(chunks):
            t = time.perf_counter()
            profile_corpus(net, cfg, part, relevance, loader=loader)
            best["with_relevance_alignment"][c] = min(best["with_relevance_alignment"][c], time.perf_counter() - t)
    plain = sum(best["plain"])
    out = {"utterances": len(utts), "chunks": len(chunks), "repeats": repeats, "plain_inference_s": plain,
           "goal": "<= 1.15"}
    for name in (*variants, "with_relevance_alignment"):
        out[f"{name}_s"] = sum(best[name])
        out[f"{name}_ratio"] = sum(best[name]) / plain
        out[f"{name}_chunk_ratios"] = [round(a / b, 3) for a, b in zip(best[name], best["plain"])]
    flops = relevance_flops(net, cfg, utts, loader)
    out.update({"relevance_alignment_goal": "<= 4", **flops, "forward_gflop_per_s": flops["forward_gflop"] / plain,
                # the rate the cones would need for the goal, with nothing else but the forward pass
                "cone_gflop_per_s_for_goal": flops["cone_gflop"] / (3 * plain)})
    return out


def relevance_flops(net, cfg, utts, loader) -> dict:
    """The arithmetic floor of the relevance alignment: multiply-adds of the convolutions in the
    forward pass, and of the transposed convolutions the cone engine runs to give every emitted
    letter its exact gradient map (each letter's window through every layer, counted as the engine
    runs them). ``flop_floor_ratio`` = (forward + cones) / forward: what the alignment costs over
    plain inference if every multiply-add ran as fast as the forward pass's."""
    from torch import nn

    from introspeech.attribution import cone
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.settings import ProfileSettings

    count = {"forward": 0, "cones": 0, "cone_seconds": 0.0}

    def forward_hook(m, _i, o):
        count["forward"] += 2 * o.shape[0] * o.shape[-1] * m.out_channels * m.in_channels // m.groups * m.kernel_size[0]

    real = cone._transposed

    def counted(r, w, stride, dilation, groups):
        count["cones"] += 2 * r.shape[0] * r.shape[-1] * w.shape[0] * w.shape[1] * w.shape[2]
        t = time.perf_counter()
        out = real(r, w, stride, dilation, groups)
        count["cone_seconds"] += time.perf_counter() - t
        return out

    handles = [m.register_forward_hook(forward_hook) for m in net.modules() if isinstance(m, nn.Conv1d)]
    cone._transposed = counted
    try:
        profile_corpus(net, cfg, utts, ProfileSettings(relevance="gradient", threads=1), loader=loader)
    finally:
        cone._transposed = real
        for h in handles:
            h.remove()
    return {"forward_gflop": count["forward"] / 1e9, "cone_gflop": count["cones"] / 1e9,
            "flop_floor_ratio": (count["forward"] + count["cones"]) / count["forward"],
            "cone_gflop_per_s": count["cones"] / 1e9 / count["cone_seconds"]}


def paired(repeats: int, quick: bool, shard_size: int = 64) -> dict:
    """The same overhead measured utterance by utterance: each utterance's plain forward pass and
    its accumulation (`accumulate_utterance`) run back to back, in alternating order, ``repeats``
    times; each keeps its fastest run. As in the engine (`run_shard`), the capture hooks stay
    registered for a shard: the accumulation runs on a copy of the model that carries them, plain
    inference on the model without hooks. The per-shard costs of the engine (registering and
    removing the hooks, merging a shard, zeroing its accumulators for reuse) are timed and added
    per utterance (``shard_size`` utterances a shard). Back-to-back pairs see the same machine speed."""
    import copy

    import numpy as np

    from introspeech.profiles.accumulators import empty, merge
    from introspeech.profiles.capture import Capture
    from introspeech.profiles.collect import accumulate_utterance
    from introspeech.profiles.settings import Layout, ProfileSettings

    net, cfg, utts, loader = _setup(None, ["test", "heldout"])
    if quick:
        utts = utts[:48]
    torch.set_num_threads(1)
    net.eval()
    layout = Layout.of(net)
    twin = copy.deepcopy(net)  # the same weights; it carries the hooks
    variants = {"naps_and_patterns": ProfileSettings(relevance="", nap_window=0, threads=1),
                "with_windowed_naps": ProfileSettings(relevance="", threads=1)}
    accs = {k: empty(layout, v) for k, v in variants.items()}
    best = {k: [float("inf")] * len(utts) for k in ("plain", "capture_floor", "time_major_forward", *variants)}
    # the same weights laid out so that every convolution writes its output time-major (no copy
    # would be needed), run through torch.func without touching the model
    tm_params = {n: (p.detach().permute(0, 2, 1).contiguous().permute(0, 2, 1) if p.dim() == 3 else p.detach())
                 for n, p in net.named_parameters()}
    tm_params.update(dict(net.named_buffers()))

    def plain(x):
        with torch.no_grad():
            net(x)

    def capture_floor(x):  # the forward with hooks and every layer copied time-major: no sums at all
        acts, _ = hooks(x)
        for name in layout.layers:
            np.ascontiguousarray(acts[name][0].numpy().T)

    def time_major_forward(x):  # the forward alone, convolution outputs time-major; no hooks, no sums
        with torch.no_grad():
            torch.func.functional_call(net, tm_params, (x[0].T.contiguous().T.unsqueeze(0),))

    with Capture(twin, layout) as hooks:
        for r in range(repeats + 1):  # the first round warms up (numba compilation, caches)
            for i, u in enumerate(utts):
                feats = loader(u, cfg)
                x = torch.as_tensor(feats).unsqueeze(0)
                order = list(best) if (i + r) % 2 else list(best)[::-1]
                for name in order:
                    t = time.perf_counter()
                    if name == "plain":
                        plain(x)
                    elif name == "capture_floor":
                        capture_floor(x)
                    elif name == "time_major_forward":
                        time_major_forward(x)
                    else:
                        accumulate_utterance(accs[name], twin, layout, variants[name], u, feats, cfg.frame_rate, hooks)
                    if r:
                        best[name][i] = min(best[name][i], time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(10):
        with Capture(twin, layout):
            pass
    hooks_per_shard = (time.perf_counter() - t) / 10
    out = {"utterances": len(utts), "repeats": repeats, "plain_inference_s": sum(best["plain"]), "goal": "<= 1.15",
           "capture_floor_ratio": sum(best["capture_floor"]) / sum(best["plain"]),
           "time_major_forward_ratio": sum(best["time_major_forward"]) / sum(best["plain"])}
    for name, s in variants.items():
        spare = empty(layout, s)
        t = time.perf_counter()
        merge(accs[name], spare)
        for v in spare.values():
            v.fill(0.0)
        per_shard = time.perf_counter() - t + hooks_per_shard
        total = sum(best[name]) + per_shard * len(utts) / shard_size
        out[f"{name}_s"] = total
        out[f"{name}_shard_cost_s"] = per_shard
        out[f"{name}_ratio"] = total / out["plain_inference_s"]
    return out


def stages(quick: bool, rounds: int = 3) -> dict:
    """Where the accumulation's time goes (settings of ``naps_and_patterns``): the stages of
    `accumulate_utterance`, called one after the other on each utterance through the functions it
    calls, beside plain inference of the same utterance; ms per utterance, fastest of ``rounds``
    for each utterance and stage (the first round warms up)."""
    import copy

    import numpy as np

    from introspeech.profiles import collect
    from introspeech.profiles.accumulators import empty
    from introspeech.profiles.capture import Capture
    from introspeech.profiles.settings import Layout, ProfileSettings

    net, cfg, utts, loader = _setup(None, ["test", "heldout"])
    if quick:
        utts = utts[:48]
    torch.set_num_threads(1)
    net.eval()
    twin = copy.deepcopy(net)  # carries the hooks; plain inference runs on the model without them
    layout, s = Layout.of(twin), ProfileSettings(relevance="", nap_window=0, threads=1)
    acc = empty(layout, s)
    names = ("plain inference", "forward with hooks", "time-major copies", "letter and phone labels", "NAP sums",
             "patterns")
    best = {k: [float("inf")] * len(utts) for k in names}
    with Capture(twin, layout) as hooks:
        for r in range(rounds + 1):
            for i, u in enumerate(utts):
                feats = loader(u, cfg)
                x = torch.as_tensor(feats).unsqueeze(0)
                marks = [time.perf_counter()]
                with torch.no_grad():
                    net(x)
                marks.append(time.perf_counter())
                acts, out = hooks(x)
                marks.append(time.perf_counter())
                rows = {n: np.ascontiguousarray(acts[n][0].numpy().T) for n in layout.layers}
                marks.append(time.perf_counter())
                scores = out[0].detach()
                kinds = collect.utterance_kinds(layout, s, u, scores, cfg.frame_rate, feats.shape[1] / cfg.frame_rate)
                labellings = collect.layer_labellings(acc, layout, s, kinds, {n: a.shape[0] for n, a in rows.items()})
                marks.append(time.perf_counter())
                for n in layout.layers:
                    collect.accumulate_layer(rows[n], *labellings[n])
                marks.append(time.perf_counter())
                collect.add_patterns(acc, twin, layout, s, kinds, x, scores, np.ascontiguousarray(feats.T))
                marks.append(time.perf_counter())
                if r:
                    for k, a, b in zip(names, marks, marks[1:]):
                        best[k][i] = min(best[k][i], b - a)
    return {k: round(1e3 * sum(v) / len(utts), 3) for k, v in best.items()} | {"unit": "ms per utterance"}


def dask_scaling(corpus: str | None, quick: bool, shard_size: int = 64) -> dict:
    from introspeech.profiles.engine import local_cluster, profile_corpus
    from introspeech.profiles.settings import ProfileSettings

    net, cfg, utts, _ = _setup(corpus, ["test"])
    if quick:
        utts = utts[:96]
    settings = ProfileSettings(relevance="", threads=1)
    out = {"corpus": corpus or "built-in demo corpus", "utterances": len(utts), "shard_size": shard_size}
    profile_corpus(net, cfg, utts[:2], settings)  # warm-up
    t = time.perf_counter()
    profile_corpus(net, cfg, utts, settings, shard_size=shard_size)
    out["in_process_s"] = time.perf_counter() - t  # what one worker should approach
    for n in (1, 2):
        t = time.perf_counter()
        with local_cluster(n) as cluster:  # the cluster `--engine dask --workers N` starts
            out[f"start_{n}_workers_s"] = time.perf_counter() - t
            profile_corpus(net, cfg, utts[:2 * n], settings, engine="dask", scheduler=cluster.scheduler_address,
                           shard_size=1)  # warm-up: imports, numba compilation on every worker
            t = time.perf_counter()
            profile_corpus(net, cfg, utts, settings, engine="dask", scheduler=cluster.scheduler_address,
                           shard_size=shard_size)
            out[f"{n}_workers_s"] = time.perf_counter() - t
    out["speedup"] = out["1_workers_s"] / out["2_workers_s"]
    out["goal"] = ">= 1.7"
    return out


CHILD = """
import sys, torch
from introspeech.asr.checkpoint import load_model
from introspeech.corpus.load import load_corpus
from introspeech.profiles.settings import ProfileSettings
from introspeech.profiles.engine import profile_corpus
net, cfg, _ = load_model()
d = load_corpus()
utts = (d["test"] + d["heldout"])[: int(sys.argv[1])]
profile_corpus(net, cfg, utts, ProfileSettings(relevance="", threads=1))
# VmHWM: this process image's peak (ru_maxrss would carry over the parent's peak through exec)
print(next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024)
"""


def memory(quick: bool) -> dict:
    n = 60 if quick else 120
    peaks = {}
    for k in (n, 2 * n):
        r = subprocess.run([sys.executable, "-c", CHILD, str(k)], capture_output=True, text=True, check=True)
        peaks[k] = float(r.stdout.strip().splitlines()[-1])
    return {"utterances": list(peaks), "peak_rss_mb": list(peaks.values()),
            "ratio": peaks[2 * n] / peaks[n], "goal": "flat (ratio ~ 1)"}


def whisper_overhead(n: int, repeats: int) -> dict:
    """Whisper's encoder: NAPs of phonemes (windowed) vs plain inference, utterance by utterance."""
    from introspeech.corpus.load import builtin_corpus, load_corpus, utterance_features
    from introspeech.models.packaged import describe_packaged
    from introspeech.profiles.engine import profile_corpus
    from introspeech.profiles.settings import ProfileSettings

    desc = describe_packaged("whisper-tiny.en")
    data = load_corpus(builtin_corpus())
    utts = [u for s in ("test", "heldout") for u in data[s]][:n]
    loader = Preloaded({u.id: utterance_features(u, desc.features) for u in utts})
    settings = ProfileSettings(groups=("phonemes",), relevance="", threads=torch.get_num_threads())
    profile_corpus(desc, desc.features, utts[:2], settings, loader=loader)  # warm up
    plain = [float("inf")] * len(utts)
    naps = [float("inf")] * len(utts)
    for _ in range(repeats):
        for i, u in enumerate(utts):
            t = time.perf_counter()
            with torch.no_grad():
                desc.module(torch.as_tensor(loader(u, desc.features)).unsqueeze(0))
            plain[i] = min(plain[i], time.perf_counter() - t)
            t = time.perf_counter()
            profile_corpus(desc, desc.features, [u], settings, loader=loader)
            naps[i] = min(naps[i], time.perf_counter() - t)
    return {"model": "whisper-tiny.en", "utterances": len(utts), "repeats": repeats,
            "threads": torch.get_num_threads(), "plain_inference_s": sum(plain), "naps_s": sum(naps),
            "ratio": sum(naps) / sum(plain), "goal": "<= 1.3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--corpus", default=None, help="corpus for the Dask run (default: work/corpus if present)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shard-size", type=int, default=64, help="utterances per Dask task (the CLI's --save-every default)")
    ap.add_argument("--whisper", type=int, default=0, help="only Whisper's encoder NAPs, over this many utterances")
    a = ap.parse_args()
    if a.whisper:
        result = {"whisper": whisper_overhead(a.whisper, a.repeats)}
        print(json.dumps(result["whisper"], indent=1), flush=True)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(result, indent=1))
        return
    corpus = a.corpus or ("work/corpus" if Path("work/corpus/test.jsonl").is_file() and not a.quick else None)
    result = {"overhead": overhead(1 if a.quick else a.repeats, a.quick)}
    print(json.dumps(result["overhead"], indent=1), flush=True)
    result["overhead_paired"] = paired(1 if a.quick else 3, a.quick)
    print(json.dumps(result["overhead_paired"], indent=1), flush=True)
    result["stages"] = stages(a.quick)
    print(json.dumps(result["stages"], indent=1), flush=True)
    result["dask"] = dask_scaling(corpus, a.quick, 16 if a.quick else a.shard_size)
    print(json.dumps(result["dask"], indent=1), flush=True)
    result["memory"] = memory(a.quick)
    print(json.dumps(result["memory"], indent=1), flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
