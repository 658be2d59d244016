"""Where phones live in the network: per layer, probes with their control task and a random-network
baseline, CKA with the phone labels and between layers, the NAP silhouette of the sampled frames,
each with a bootstrap interval over utterances and a permutation p-value over labels."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

from ..models.description import ModelDescription
from ..profiles.cluster import distances
from ..profiles.labels import PHONEME_GROUPS
from ..summaries import json_ready
from ..text import CATEGORY
from .measures import control_labels, label_cka, linear_cka, majority_rate, probe_accuracy, split_by_utterance
from .sampling import Frames, randomized_copy, sample_frames
from .topography import layout, neighbour_p, neighbour_score
from .uncertainty import bootstrap_interval, cka_bootstrap_interval, permutation_p


def probe_score(seed: int = 0, max_iter: int = 200):
    """score(x, labels, utterances): probe accuracy on an utterance-level split."""
    def score(x, labels, groups):
        train, test = split_by_utterance(groups, seed=seed)
        return probe_accuracy(x, labels, train, test, max_iter)
    return score


def cka_score(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Linear CKA with the one-hot labels."""
    return label_cka(x, labels)


def cka_score_of(x: np.ndarray):
    """`cka_score` for frames ``x`` only, with ‖X̃ᵀX̃‖ computed once (label permutations reuse it)."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, 0)
    norm = float(np.linalg.norm(xc.T @ xc))

    def score(xx, labels, groups):
        if xx is not x:
            raise ValueError("cka_score_of scores the frames it was made for; use cka_score for others")
        return label_cka(x, labels, norm)
    return score


def nap_silhouette(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Silhouette of the phoneme NAPs (means of the sampled frames per phone, contrastive, cosine)
    grouped by manner of articulation, as `profiles` scores the full NAPs."""
    names, naps = [], []
    for g in np.unique(labels):
        rows = labels == g
        if rows.sum() >= 5 and PHONEME_GROUPS[g] in CATEGORY:
            names.append(PHONEME_GROUPS[g])
            naps.append(x[rows].mean(0))
    if len(naps) < 3:
        return float("nan")
    naps = np.array(naps) - np.mean(naps, 0)
    cats = [CATEGORY[n] for n in names]
    if len(set(cats)) < 2 or len(set(cats)) >= len(cats):
        return float("nan")
    return float(silhouette_score(squareform(distances(naps, "cosine")), cats, metric="precomputed"))


def layer_scores(frames: Frames, random_frames: Frames | None, name: str, bootstrap: int, permutations: int,
                 probe_permutations: int, seed: int) -> dict:
    x, ph, groups = frames.layers[name], frames.phones, frames.utterances
    train, test = split_by_utterance(groups, seed=seed)
    probe = probe_score(seed)
    row: dict = {"probe_phones": probe(x, ph, groups), "control_phones": probe(x, control_labels(ph, seed), groups)}
    row["selectivity_phones"] = row["probe_phones"] - row["control_phones"]
    row["majority_phones"] = majority_rate(ph, train, test)
    has_letter = frames.letters >= 0
    row["probe_letters"] = probe(x[has_letter], frames.letters[has_letter], groups[has_letter])
    row["random_init_probe_phones"] = (probe(random_frames.layers[name], ph, groups) if random_frames is not None
                                       else float("nan"))
    cheap = {"cka_phones": cka_score_of(x), "nap_silhouette": nap_silhouette}
    row["cka_phones"] = cheap["cka_phones"](x, ph, groups)
    row["nap_silhouette"] = nap_silhouette(x, ph, groups)
    row["ci"] = {"cka_phones": list(cka_bootstrap_interval(x, ph, groups, bootstrap, seed=seed)),
                 "nap_silhouette": list(bootstrap_interval(nap_silhouette, x, ph, groups, bootstrap, seed=seed))}
    row["ci"]["probe_phones"] = list(_test_interval(x, ph, groups, train, test, bootstrap, seed))
    row["p"] = {k: permutation_p(f, x, ph, groups, permutations, seed, row[k]) for k, f in cheap.items()}
    row["p"]["probe_phones"] = permutation_p(probe, x, ph, groups, probe_permutations, seed, row["probe_phones"])
    return row


def _test_interval(x, labels, groups, train, test, samples: int, seed: int) -> tuple[float, float]:
    """Bootstrap interval of the probe's test accuracy over test utterances (the probe fitted once)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(labels[train])) < 2:
        return float("nan"), float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x[train], labels[train])
    right = (probe.predict(x[test]) == labels[test]).astype(np.float64)
    return bootstrap_interval(lambda xx, ll, gg: float(ll.mean()), right[:, None], right, groups[test], samples,
                              seed=seed)


def analyse(desc: ModelDescription, utts, per_utterance: int = 40, bootstrap: int = 200, permutations: int = 199,
            probe_permutations: int = 19, random_baseline: bool = True, seed: int = 0,
            on_error: Callable | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The `summary.json` of `introspeech representations` (see the module docstring)."""
    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    frames = sample_frames(desc, utts, per_utterance, seed, on_error=on_error)
    sampling_s = time.perf_counter() - t0
    random_frames = (sample_frames(desc, utts, per_utterance, seed, randomized_copy(desc.module, seed), on_error=None)
                     if random_baseline else None)
    layers, maps = {}, {}
    for name in frames.layers:
        say(f"representations: {name}")
        layers[name] = layer_scores(frames, random_frames, name, bootstrap, permutations, probe_permutations, seed)
        maps[name] = topographic(frames.layers[name], frames.phones, seed)
        if maps[name]:
            layers[name]["topography_score"] = maps[name]["score"]
            layers[name]["p"]["topography"] = neighbour_p(maps[name]["naps"], maps[name]["coords"],
                                                          permutations=permutations, seed=seed)
    names = list(frames.layers)
    cka = [[linear_cka(frames.layers[a], frames.layers[b]) for b in names] for a in names]
    summary = {"layers": layers, "cka_layers": {"layers": names, "matrix": cka}, "frames": int(frames.phones.size),
               "utterances": int(np.unique(frames.utterances).size),
               "seconds": {"sampling": sampling_s, "total": time.perf_counter() - t0},
               "settings": {"per_utterance": per_utterance, "bootstrap": bootstrap, "permutations": permutations,
                            "probe_permutations": probe_permutations, "seed": seed}}
    summary["findings"] = findings(summary)
    summary = json_ready(summary)
    summary["maps"] = maps  # arrays for the figures; not part of summary.json
    return summary


def topographic(x: np.ndarray, labels: np.ndarray, seed: int = 0, min_frames: int = 5) -> dict:
    """A layer's channel layout from the contrastive phoneme NAPs of the sampled frames."""
    groups = [g for g in np.unique(labels) if (labels == g).sum() >= min_frames]
    if len(groups) < 3 or x.shape[1] < 4:
        return {}
    naps = np.stack([x[labels == g].mean(0) for g in groups])
    naps = naps - naps.mean(0)
    coords = layout(naps, seed)
    return {"coords": coords, "naps": naps, "phonemes": [PHONEME_GROUPS[g] for g in groups],
            "score": neighbour_score(naps, coords)}


def findings(summary: dict) -> list[str]:
    """Where phone information peaks by each instrument, and whether they agree."""
    rows = summary["layers"]
    out, peaks = [], {}
    for key, label in (("selectivity_phones", "probe selectivity"), ("cka_phones", "CKA with phones"),
                       ("nap_silhouette", "NAP silhouette"), ("probe_letters", "letter probes")):
        vals = {n: r[key] for n, r in rows.items() if r[key] == r[key]}
        if vals:
            best = max(vals, key=vals.get)
            peaks[key] = best
            out.append(f"{label} peaks in {best} ({vals[best]:.2f})")
    if len({peaks.get(k) for k in ("selectivity_phones", "cka_phones", "nap_silhouette") if k in peaks}) == 1:
        out.append("the three phone instruments agree on the layer")
    else:
        out.append("the phone instruments disagree on the layer: " + ", ".join(f"{k} {v}" for k, v in peaks.items()))
    return out

