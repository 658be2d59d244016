"""Sparse autoencoders for every layer of a model over a corpus split: wall time, activations per
second, peak memory (one pass over half and over the whole split, in fresh processes), and the
measures of `causal.sae_eval` on another split.

    python benchmarks/sae.py [--model M] [--corpus DIR] [--k 16] [--epochs 20] [--threads 2]
                             [--json out/bench/sae.json]

Goals: every layer of the built-in model over the demo corpus in <= 10 min on 2 cores, memory flat
in the corpus' size (the activations are streamed: the peak RSS of the training process is
reported with half and the whole split).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

from introspeech.asr.checkpoint import load_model
from introspeech.causal.sae import SAESettings, train_saes
from introspeech.causal.sae_eval import evaluate_saes
from introspeech.corpus.load import load_corpus
from introspeech.models.description import describe
from introspeech.profiles.settings import Layout


def run(model, corpus, split, n, settings, threads, queue=None):
    torch.set_num_threads(threads)
    module, cfg, _ = load_model(model)
    desc = describe(module, features=cfg)
    layout = Layout.of(desc)
    utts = load_corpus(corpus)[split]
    utts = utts[:n] if n else utts
    t0 = time.perf_counter()
    saes = train_saes(module, layout, cfg, utts, settings)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "utterances": len(utts), "layers": len(saes),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if queue is not None:
        queue.put(out)
    return out, saes, desc, layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--corpus")
    ap.add_argument("--train-split", default="test")
    ap.add_argument("--eval-split", default="heldout")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--expansion", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true", help="skip the half-split memory run")
    ap.add_argument("--json")
    a = ap.parse_args()
    settings = SAESettings(expansion=a.expansion, k=a.k, epochs=a.epochs)
    result: dict = {"settings": settings.__dict__, "threads": a.threads}
    whole, saes, desc, layout = run(a.model, a.corpus, a.train_split, 0, settings, a.threads)
    # activations per second: frames of every layer, every pass
    module = desc.module
    frames = 0
    from introspeech.corpus.load import load_features
    from introspeech.profiles.capture import Capture

    utts = load_corpus(a.corpus)[a.train_split]
    with Capture(module, layout) as cap, torch.no_grad():
        for _u, f in load_features(utts, desc.features):
            acts, _ = cap(torch.as_tensor(f).unsqueeze(0))
            frames += sum(v.shape[-1] for v in acts.values())
    whole["activation_frames_per_pass"] = frames
    whole["activations_per_second"] = frames * settings.epochs / whole["seconds"]
    result["train"] = whole
    print(f"{len(saes)} layers, {whole['utterances']} utterances, {settings.epochs} passes: {whole['seconds']:.0f} s "
          f"({whole['activations_per_second']:.0f} layer-frames/s), peak RSS {whole['peak_rss_mb']:.0f} MB")
    if not a.no_memory:
        ctx = mp.get_context("spawn")
        rss = {}
        for label, frac in (("half", 2), ("whole", 1)):
            q = ctx.Queue()
            n = len(utts) // frac
            p = ctx.Process(target=run, args=(a.model, a.corpus, a.train_split, n,
                                              SAESettings(**{**settings.__dict__, "epochs": 1}), a.threads, q))
            p.start()
            rss[label] = q.get()["peak_rss_mb"]
            p.join()
        result["memory_peak_rss_mb"] = rss
        print(f"peak RSS, one pass over half / the whole split: {rss['half']:.0f} / {rss['whole']:.0f} MB")
    t0 = time.perf_counter()
    ev = evaluate_saes(desc, layout, load_corpus(a.corpus)[a.eval_split], saes)
    result["evaluation_seconds"] = time.perf_counter() - t0
    result["evaluation"] = ev
    print(f"model {ev['metric'].upper()} {100 * ev['error_rate']:.1f} %")
    for n, r in ev["layers"].items():
        sel = r["selectivity"].get("phonemes", {})
        spliced = f"spliced {ev['metric'].upper()} {100 * r['spliced_error_rate']:.1f} %"
        print(f"{n:>12}: FVU {r['fvu']:.3f}, dead {100 * r['dead_share']:.1f} %, {spliced}"
              + (f", phoneme-selective neurons {100 * sel['neurons']['share']:.0f} % / features "
                 f"{100 * sel['features']['share']:.0f} %" if sel else ""))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
