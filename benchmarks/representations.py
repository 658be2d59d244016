"""Cost of `introspeech representations` without probe fitting, against plain inference.

Plain inference: reading each test utterance's cached features and one forward pass. Analysis:
the frame sampling pass (forward with the activation capture, forced alignment, labels), then per
layer CKA with phones, the NAP silhouette and the topographic layout with their bootstrap
intervals and permutation p-values, and CKA between all layers. Probe fitting is timed separately
(one phone probe per layer), as the issue asks. Torch threads 1.

    python benchmarks/representations.py [--bootstrap 100] [--permutations 99] [--json out/bench/representations.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-utterance", type=int, default=30)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--permutations", type=int, default=99)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from introspeech.asr.checkpoint import load_model
    from introspeech.corpus.load import load_corpus, utterance_features
    from introspeech.models.description import describe
    from introspeech.representations.measures import cka_matrix
    from introspeech.representations.run import layer_measures, probe_score
    from introspeech.representations.sampling import sample_frames

    model, cfg, _ = load_model()
    desc = describe(model, features=cfg)
    utts = load_corpus()["test"]
    t0 = time.perf_counter()
    with torch.no_grad():
        for u in utts:
            model(torch.as_tensor(utterance_features(u, cfg)).unsqueeze(0))
    plain = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = sample_frames(desc, utts, args.per_utterance)
    sampling = time.perf_counter() - t0
    t1 = time.perf_counter()
    ph, groups = frames.phones, frames.utterances
    for x in frames.layers.values():  # what `introspeech representations` computes per layer, probes aside
        layer_measures(x, ph, groups, args.bootstrap, args.permutations, seed=0)
    cka_matrix(list(frames.layers.values()))
    scores = time.perf_counter() - t1
    t2 = time.perf_counter()
    probe = probe_score()
    for x in frames.layers.values():
        probe(x, ph, groups)
    probes = time.perf_counter() - t2
    report = {"utterances": len(utts), "frames": int(ph.size), "plain_inference_s": plain, "sampling_s": sampling,
              "scores_s": scores, "analysis_ratio": (sampling + scores) / plain, "goal": "<= 3x plain inference",
              "one_probe_per_layer_s": probes}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
