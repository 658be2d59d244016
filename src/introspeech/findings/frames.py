"""The claims measured on sampled frames (`representations.sampling`): per layer, how well the
model's output units separate (F1, η²), how phoneme NAPs cluster by manner, place and voicing (F2,
silhouette) and where phones live (F7: probe, control task, CKA). Every value has a bootstrap
interval over utterances (`shifted_interval`: percentile, moved by the resamples' bias) and, where
it is a score, a permutation p over the frames' labels, through the machinery of `introspeech
representations`."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..profiles.labels import PHONEME_GROUPS
from ..profiles.results import eta_squared
from ..representations.measures import (
    control_labels,
    majority_rate,
    probe_accuracy,
    probe_predictions,
    split_by_utterance,
)
from ..representations.run import cka_score, naps_silhouette
from ..representations.sampling import Frames
from ..representations.uncertainty import (
    UtteranceSums,
    cka_bootstrap_values,
    interval,
    mean_interval,
    nap_bootstrap_values,
    p_value,
    permuted_class_sums,
    shifted_interval,
)
from ..text import CATEGORY, PLACE, SILENCE, VOICING

CATEGORIES = {"manner": CATEGORY, "place": PLACE, "voicing": VOICING}
"""F2's groupings of the phones (place and voicing: consonants only, see `text`)."""


def unit_labels(frames: Frames, units: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The frames F1 scores and their output-unit labels: ``"letters"`` (a spelling CTC model) or
    ``"tokens"`` (a phoneme recognizer's own tokens) on the frames where their forced alignment puts
    them, as `Frames.letters` holds them; ``"phonemes"`` (a model without output units of its own,
    Whisper's encoder): the corpus' phones, silence left out (it would score speech against
    silence, which the log-Mel energy alone separates)."""
    if units in ("letters", "tokens"):
        keep = frames.letters >= 0
        return keep, frames.letters[keep], frames.utterances[keep], units
    keep = frames.phones != PHONEME_GROUPS.index(SILENCE)
    return keep, frames.phones[keep], frames.utterances[keep], "phonemes"


def output_units(desc) -> str:
    """Which units F1 scores for a model (see `unit_labels`)."""
    if desc.output.kind != "ctc":
        return "phonemes"
    return "tokens" if desc.output.spaced else "letters"


def eta2_values(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, bootstrap: int, permutations: int,
                seed: int) -> dict:
    """η² (between-label / total sum of squares over all channels) with its bootstrap interval over
    utterances and its permutation p over the labels, all from class sums (one product each)."""
    x = np.asarray(x, dtype=np.float64)
    sums = UtteranceSums(x, labels, groups, gram=False)
    owner = np.searchsorted(sums.ids, groups)
    sq = np.zeros((len(sums.ids), x.shape[1]))
    np.add.at(sq, owner, x ** 2)
    total_sq = sq.sum(0)
    value = eta_squared(sums.class_sums.sum(0), sums.class_counts.sum(0), total_sq)
    w = sums.weights(bootstrap, seed)
    cs = (w @ sums.class_sums.reshape(len(sums.ids), -1)).reshape(bootstrap, len(sums.classes), -1)
    counts, sqs = w @ sums.class_counts, w @ sq
    boot = [eta_squared(cs[b], counts[b], sqs[b]) for b in range(bootstrap)]
    perm_sums, perm_counts, _ = permuted_class_sums(x, labels, permutations, seed)
    perm = [eta_squared(perm_sums[k], perm_counts, total_sq) for k in range(permutations)]
    return {"value": value, "ci": list(shifted_interval(boot, value)), "p": p_value(np.array(perm), value)}


def silhouette_values(x: np.ndarray, phones: np.ndarray, groups: np.ndarray, bootstrap: int, permutations: int,
                      seed: int) -> dict[str, dict]:
    """F2 of one layer: the silhouette of the contrastive phoneme NAPs grouped by each of
    `CATEGORIES`, with bootstrap interval, permutation p and the resampled values (kept for the
    interval of the peak layer)."""
    sums = UtteranceSums(x, phones, groups, gram=False)
    perm_sums, perm_counts, classes = permuted_class_sums(np.asarray(x, np.float64), phones, permutations, seed)
    out = {}
    for name, category in CATEGORIES.items():
        score = partial(naps_silhouette, category=category)
        value = score(sums.class_sums.sum(0), sums.class_counts.sum(0), sums.classes)
        boot = nap_bootstrap_values(score, x, phones, groups, bootstrap, seed, sums)
        perm = np.array([score(perm_sums[k], perm_counts, classes) for k in range(permutations)])
        out[name] = {"value": value, "ci": list(shifted_interval(boot, value)), "p": p_value(perm, value), "boot": boot}
    return out


def peak(per_layer: dict[str, dict], depth: dict[str, float]) -> dict:
    """The layer where a measure peaks, its relative depth, and the 95 % interval of the peak's
    relative depth over the bootstrap resamples (each resample's own peak)."""
    names = [n for n, r in per_layer.items() if r["value"] == r["value"]]
    if not names:
        return {"layer": None, "depth": float("nan"), "depth_ci": [float("nan")] * 2}
    best = max(names, key=lambda n: per_layer[n]["value"])
    boot = np.array([per_layer[n]["boot"] for n in names])  # (layers, resamples)
    ok = ~np.isnan(boot).all(0)
    peaks = [depth[names[i]] for i in np.nanargmax(np.where(np.isnan(boot[:, ok]), -np.inf, boot[:, ok]), 0)]
    return {"layer": best, "depth": depth[best], "depth_ci": list(interval(peaks))}


def relative_depth(layers: list[str]) -> dict[str, float]:
    """Each layer's position from the first (0) to the last (1)."""
    n = max(len(layers) - 1, 1)
    return {name: i / n for i, name in enumerate(layers)}


def frame_measures(frames: Frames, units: str, bootstrap: int = 100, permutations: int = 99, seed: int = 0,
                   progress=None) -> dict:
    """F1, F2 and F7 for every layer of a sample (see the module docstring)."""
    layers = list(frames.layers)
    depth = relative_depth(layers)
    keep, labels, unit_groups, unit_kind = unit_labels(frames, units)
    f1, f2, f7 = {}, {name: {} for name in CATEGORIES}, {}
    for name in layers:
        if progress:
            progress(f"findings: frames of {name}")
        x = frames.layers[name]
        f1[name] = eta2_values(x[keep], labels, unit_groups, bootstrap, permutations, seed)
        for cat, v in silhouette_values(x, frames.phones, frames.utterances, bootstrap, permutations, seed).items():
            f2[cat][name] = v
        cka = cka_score(x, frames.phones, frames.utterances)
        perm_sums, perm_counts, _ = permuted_class_sums(np.asarray(x, np.float64) - x.mean(0), frames.phones,
                                                        permutations, seed)
        f7[name] = {**probe_values(x, frames.phones, frames.utterances, bootstrap, permutations, seed),
                    "cka": {"value": cka, "ci": list(shifted_interval(cka_bootstrap_values(
                        x, frames.phones, frames.utterances, bootstrap, seed=seed), cka)),
                            "p": _cka_p(x, perm_sums, perm_counts, cka)}}
    peaks = {cat: peak(v, depth) for cat, v in f2.items()}
    for v in f2.values():
        for row in v.values():
            row.pop("boot")
    return {"layers": layers, "depth": depth, "units": unit_kind, "frames": int(frames.phones.size),
            "utterances": int(np.unique(frames.utterances).size), "F1": f1, "F2": {"layers": f2, "peaks": peaks},
            "F7": f7}


def probe_values(x: np.ndarray, phones: np.ndarray, groups: np.ndarray, bootstrap: int, permutations: int,
                 seed: int) -> dict:
    """F7's probe (`representations`' logistic-regression probe on an utterance-level split): its
    held-out accuracy with a bootstrap interval over the held-out utterances, and a permutation p
    of the held-out labels against the fitted probe's predictions (a test of their association
    that needs no refit); the control task (Hewitt & Liang), selectivity and the majority rate."""
    train, test = split_by_utterance(groups, seed=seed)
    pred = probe_predictions(x, phones, train, test, 200)
    if pred is None:
        nan = float("nan")
        return {"probe": {"value": nan, "ci": [nan, nan], "p": nan}, "control": nan, "selectivity": nan,
                "majority": nan}
    truth = phones[test]
    hits = (pred == truth).astype(np.float64)
    row = mean_interval(hits, groups[test], bootstrap, seed)
    rng = np.random.default_rng(seed)
    row["p"] = p_value(np.array([np.mean(pred == rng.permutation(truth)) for _ in range(permutations)]), row["value"])
    control = probe_accuracy(x, control_labels(phones, seed), train, test, 200)
    return {"probe": row, "control": control, "selectivity": row["value"] - control,
            "majority": majority_rate(phones, train, test)}


def _cka_p(x: np.ndarray, perm_sums: np.ndarray, counts: np.ndarray, observed: float) -> float:
    """Permutation p of the linear CKA with one-hot phones from the permutations' centred class sums."""
    from ..representations.measures import label_gram_norm

    xc = np.asarray(x, np.float64) - np.mean(x, 0)
    xx, yy = np.linalg.norm(xc.T @ xc), label_gram_norm(counts)
    if not (xx > 0 and yy > 0):
        return float("nan")
    return p_value(np.sum(perm_sums ** 2, axis=(1, 2)) / (xx * yy), observed)
