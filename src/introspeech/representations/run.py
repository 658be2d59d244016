"""Where phones live in the network: per layer, probes with their control task and a random-network
baseline, CKA with the phone labels and between layers, the NAP silhouette of the sampled frames,
each with a bootstrap interval over utterances and a permutation p-value over labels."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import squareform

from ..models.description import ModelDescription
from ..profiles.cluster import distances
from ..profiles.labels import PHONEME_GROUPS
from ..profiles.settings import Layout
from ..summaries import json_ready
from ..text import CATEGORY
from .measures import (
    cka_matrix,
    class_sums,
    control_labels,
    label_cka,
    label_gram_norm,
    majority_rate,
    probe_accuracy,
    probe_hits,
    split_by_utterance,
)
from .sampling import Frames, randomized_copy, sample_frames
from .topography import layout, neighbour_p, neighbour_score
from .uncertainty import (
    UtteranceSums,
    bootstrap_interval,
    cka_bootstrap_interval,
    nap_bootstrap_interval,
    p_value,
    permutation_p,
    permuted_class_sums,
)


def probe_score(seed: int = 0, max_iter: int = 200):
    """score(x, labels, utterances): probe accuracy on an utterance-level split."""
    def score(x, labels, groups):
        train, test = split_by_utterance(groups, seed=seed)
        return probe_accuracy(x, labels, train, test, max_iter)
    return score


def cka_score(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Linear CKA with the one-hot labels."""
    return label_cka(x, labels)


def silhouette(d: np.ndarray, labels: list) -> float:
    """Mean silhouette of items with distance matrix ``d`` and cluster ``labels`` (scikit-learn's
    definition, a singleton's value 0), vectorized for the few dozen NAPs scored thousands of times."""
    lab = np.asarray(labels)
    _, idx = np.unique(lab, return_inverse=True)
    member = np.eye(idx.max() + 1)[idx]  # (items, clusters)
    size = member.sum(0)
    mean_to = d @ member  # summed distance to each cluster
    own = size[idx]
    a = mean_to[np.arange(len(idx)), idx] / np.maximum(own - 1, 1)
    other = np.where(member.astype(bool), np.inf, mean_to / size)
    b = other.min(1)
    sil = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(sil.mean())


def naps_silhouette(class_sums: np.ndarray, counts: np.ndarray, classes: np.ndarray, min_frames: int = 5,
                    category: dict[str, str] = CATEGORY) -> float:
    """Silhouette of the contrastive phoneme NAPs (class means; classes with at least ``min_frames``
    frames) grouped by manner of articulation (or another ``category`` of the phones; phones it
    leaves out are left out), cosine distance, as `profiles` scores the full NAPs."""
    keep = [i for i, g in enumerate(classes) if counts[i] >= min_frames and PHONEME_GROUPS[g] in category]
    if len(keep) < 3:
        return float("nan")
    naps = class_sums[keep] / counts[keep, None]
    naps = naps - naps.mean(0)
    cats = [category[PHONEME_GROUPS[classes[i]]] for i in keep]
    if len(set(cats)) < 2 or len(set(cats)) >= len(cats):
        return float("nan")
    return silhouette(squareform(distances(naps, "cosine")), cats)


def nap_silhouette(x: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """`naps_silhouette` of frames ``x`` with phone ``labels``."""
    return naps_silhouette(*class_sums(x, labels))


def permutation_values(x: np.ndarray, ph: np.ndarray, permutations: int, seed: int, observed: dict) -> dict:
    """Permutation p-values of the CKA with phones and the NAP silhouette, from the class sums of
    every permutation at once (`permuted_class_sums`); equal to `permutation_p` of `label_cka` and
    `nap_silhouette` with the same seed (tested)."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, 0)
    sums, counts, classes = permuted_class_sums(xc, ph, permutations, seed)
    yy = label_gram_norm(counts)
    xx = np.linalg.norm(xc.T @ xc)
    cka = np.sum(sums ** 2, axis=(1, 2)) / (xx * yy) if xx > 0 and yy > 0 else np.full(permutations, np.nan)
    sil = np.array([naps_silhouette(sums[k], counts, classes) for k in range(permutations)])
    return {"cka_phones": p_value(cka, observed["cka_phones"]), "nap_silhouette": p_value(sil, observed["nap_silhouette"])}


def layer_measures(x: np.ndarray, ph: np.ndarray, groups: np.ndarray, bootstrap: int, permutations: int,
                   seed: int) -> tuple[dict, dict]:
    """Everything of one layer but the probes: CKA with phones, NAP silhouette, their bootstrap
    intervals and permutation p-values, and the topographic map with its score and p-value."""
    row: dict = {"cka_phones": cka_score(x, ph, groups), "nap_silhouette": nap_silhouette(x, ph, groups)}
    sums = UtteranceSums(x, ph, groups)
    row["ci"] = {"cka_phones": list(cka_bootstrap_interval(x, ph, groups, bootstrap, seed=seed, sums=sums)),
                 "nap_silhouette": list(nap_bootstrap_interval(naps_silhouette, x, ph, groups, bootstrap, seed=seed,
                                                               sums=sums))}
    row["p"] = permutation_values(x, ph, permutations, seed, row)
    topo = topographic(x, ph, seed)
    if topo:
        row["topography_score"] = topo["score"]
        row["p"]["topography"] = neighbour_p(topo["naps"], topo["coords"], permutations=permutations, seed=seed)
    return row, topo


def layer_probes(frames: Frames, random_frames: Frames | None, name: str, bootstrap: int, probe_permutations: int,
                 seed: int) -> dict:
    """The probes of one layer: phones, their control task and selectivity, letters, the random
    network; the phone probe's bootstrap interval over test utterances and its permutation p-value."""
    x, ph, groups = frames.layers[name], frames.phones, frames.utterances
    train, test = split_by_utterance(groups, seed=seed)
    probe = probe_score(seed)
    hits = probe_hits(x, ph, train, test, 200)
    row: dict = {"probe_phones": float("nan") if hits is None else float(np.mean(hits)),
                 "control_phones": probe(x, control_labels(ph, seed), groups)}
    row["selectivity_phones"] = row["probe_phones"] - row["control_phones"]
    row["majority_phones"] = majority_rate(ph, train, test)
    has_letter = frames.letters >= 0
    row["probe_letters"] = (probe(x[has_letter], frames.letters[has_letter], groups[has_letter]) if has_letter.any()
                            else float("nan"))  # a model that does not spell letters (phonemes, an encoder)
    row["random_init_probe_phones"] = (probe(random_frames.layers[name], ph, groups) if random_frames is not None
                                       else float("nan"))
    right = np.zeros(0) if hits is None else hits.astype(np.float64)
    row["ci_probe_phones"] = list(bootstrap_interval(lambda xx, ll, gg: float(ll.mean()) if ll.size else float("nan"),
                                                     right[:, None], right, groups[test], bootstrap, seed=seed)
                                  if hits is not None else (float("nan"), float("nan")))
    row["p_probe_phones"] = permutation_p(probe, x, ph, groups, probe_permutations, seed, row["probe_phones"])
    return row


def analyse(desc: ModelDescription, utts, per_utterance: int = 40, bootstrap: int = 200, permutations: int = 199,
            probe_permutations: int = 19, random_baseline: bool = True, seed: int = 0,
            on_error: Callable | None = None, progress: Callable[[str], None] | None = None,
            layers: list[str] | None = None) -> dict:
    """The `summary.json` of `introspeech representations` (see the module docstring); ``layers``:
    only these layers (names as `introspeech layers` prints them; default all)."""
    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    if layers is not None:  # named before the sampling pass, not after it
        known = Layout.of(desc).layers
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise ValueError(f"no layer {unknown[0]!r} (the layers are {', '.join(known)})")
    bad: set[str] = set()

    def skip(u, e) -> None:
        bad.add(u.id)
        if on_error is None:
            raise e
        on_error(u, e)
    frames = sample_frames(desc, utts, per_utterance, seed, on_error=skip)
    if layers is not None:
        frames.layers = {n: frames.layers[n] for n in layers}
    sampling_s = time.perf_counter() - t0
    random_frames = (sample_frames(desc, [u for u in utts if u.id not in bad], per_utterance, seed,
                                   randomized_copy(desc.module, seed), on_error=None)  # the same utterances
                     if random_baseline else None)
    rows, maps = {}, {}
    t_probes = 0.0
    for name in frames.layers:
        say(f"representations: {name}")
        t1 = time.perf_counter()
        probes = layer_probes(frames, random_frames, name, bootstrap, probe_permutations, seed)
        t_probes += time.perf_counter() - t1
        row, maps[name] = layer_measures(frames.layers[name], frames.phones, frames.utterances, bootstrap,
                                         permutations, seed)
        row["ci"]["probe_phones"] = probes.pop("ci_probe_phones")
        row["p"]["probe_phones"] = probes.pop("p_probe_phones")
        rows[name] = {**probes, **row}
    names = list(frames.layers)
    cka = cka_matrix([frames.layers[n] for n in names])
    summary = {"layers": rows, "cka_layers": {"layers": names, "matrix": cka}, "frames": int(frames.phones.size),
               "utterances": int(np.unique(frames.utterances).size),
               "seconds": {"sampling": sampling_s, "probes": t_probes, "total": time.perf_counter() - t0},
               "settings": {"per_utterance": per_utterance, "bootstrap": bootstrap, "permutations": permutations,
                            "probe_permutations": probe_permutations, "seed": seed}}
    summary["findings"] = findings(summary)
    summary = json_ready(summary)
    summary["maps"] = maps  # arrays for the figures; not part of summary.json
    return summary


def topographic(x: np.ndarray, labels: np.ndarray, seed: int = 0, min_frames: int = 5) -> dict:
    """A layer's channel layout from the contrastive phoneme NAPs of the sampled frames."""
    sums, counts, classes = class_sums(x, labels)
    keep = counts >= min_frames
    if keep.sum() < 3 or x.shape[1] < 4:
        return {}
    groups = classes[keep]
    naps = sums[keep] / counts[keep, None]
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
        out.append("the phone instruments disagree on the layer: " + ", ".join(
            f"{k} {v}" for k, v in peaks.items() if k != "probe_letters"))
    return out

