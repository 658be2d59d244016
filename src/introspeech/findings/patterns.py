"""F3 and F4 (the seed's letter patterns) with bootstrap intervals over utterances.

Per utterance, every symbol on the greedy CTC path is placed twice in the pattern space: at the
nominal position of its output frame, and where the summed |relevance| of its map peaks (one
method per alignment: the gradient, ε-LRP, and CP-LRP on models with attention). The windows of
±``half`` frames around them are summed per symbol (`profiles.kernels`, the same sums as
`introspeech patterns`). The pattern space is the input's log-Mel frames, or for a waveform model
the output of its first layer (its log-Mel front end), where map columns are pooled per frame.

The sums are folded into the bootstrap resamples as each utterance arrives (its multiplicity in
every resample), so memory is that of the resamples, not of the corpus.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..attribution.definitions import NAMED
from ..attribution.frames import FrameGeometry, attribute_frames
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..models.description import ModelDescription
from ..profiles.alignment import emission_frames
from ..profiles.cluster import mean_pairwise_cosine
from ..profiles.kernels import add_windows, frame_targets
from ..profiles.labels import layer_frame
from ..representations.uncertainty import bootstrap_weights, shifted_interval


class PatternSums:
    """Window sums per group for each alignment: the point estimate (float64) and every bootstrap
    resample (float32), each utterance added with its multiplicities."""

    def __init__(self, aligns: list[str], groups: int, width: int, channels: int, weights: np.ndarray) -> None:
        self.weights = weights  # (resamples, utterances)
        b = weights.shape[0]
        self.sum = {a: np.zeros((groups, width, channels)) for a in aligns}
        self.count = {a: np.zeros((groups, width)) for a in aligns}
        self.boot_sum = {a: np.zeros((b, groups, width, channels), np.float32) for a in aligns}
        self.boot_count = {a: np.zeros((b, groups, width), np.float32) for a in aligns}

    def add(self, utterance: int, align: str, rows: np.ndarray, groups: np.ndarray, centres: np.ndarray) -> None:
        """Windows of ``rows`` ``(time, channels)`` around ``centres`` of ``groups``."""
        if not groups.size:
            return
        s, c = np.zeros_like(self.sum[align]), np.zeros_like(self.count[align])
        half = (c.shape[1] - 1) // 2
        add_windows(s, c, rows, *frame_targets(groups, centres, half, rows.shape[0]))
        seen = np.unique(groups)
        self.sum[align][seen] += s[seen]
        self.count[align][seen] += c[seen]
        w = self.weights[:, utterance]
        for b in np.flatnonzero(w):
            self.boot_sum[align][b, seen] += (w[b] * s[seen]).astype(np.float32)
            self.boot_count[align][b, seen] += w[b] * c[seen]


def statistics(total: np.ndarray, count: np.ndarray, keep: np.ndarray) -> dict:
    """Raw and normalized patterns' mean pairwise cosine and the normalized patterns' RMS, over the
    groups ``keep`` (normalized: minus the mean window of all groups, as `profiles.results.patterns`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = total / count[..., None]
        grand = total.sum(0) / count.sum(0)[..., None]
    norm = raw - grand[None]
    if len(keep) < 2:  # too few frequent groups for a pairwise measure
        return {"raw_cosine": float("nan"), "normalized_cosine": float("nan"), "rms": float("nan")}
    r, n = raw[keep].reshape(len(keep), -1), norm[keep].reshape(len(keep), -1)
    return {"raw_cosine": mean_pairwise_cosine(np.nan_to_num(r)), "normalized_cosine":
            mean_pairwise_cosine(np.nan_to_num(n)), "rms": float(np.sqrt(np.nanmean(n ** 2)))}


def pattern_space(desc: ModelDescription, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, Callable]:
    """The model's scores ``(symbols, frames)``, the pattern rows ``(time, channels)`` and the map
    from input positions to pattern frames."""
    if desc.features.kind != "waveform":
        with torch.no_grad():
            scores = desc.module(x)[0]
        return scores, np.ascontiguousarray(x[0].numpy().T, np.float32), lambda pos: np.asarray(pos, np.int64)
    first = desc.layers[0]
    held = []
    hook = desc.module.get_submodule(first.path).register_forward_hook(lambda m, i, o: held.append(o.detach()))
    try:
        with torch.no_grad():
            scores = desc.module(x)[0]
    finally:
        hook.remove()
    a = held[0][0]
    rows = a.T if first.time_axis == -1 else a
    return scores, np.ascontiguousarray(rows.numpy(), np.float32), lambda pos: layer_frame(first.geometry, pos)


def evidence(desc: ModelDescription, x: torch.Tensor, scores: torch.Tensor, frames: np.ndarray, method: str,
             to_frame: Callable) -> np.ndarray:
    """The pattern frame where each emission's summed |relevance| peaks (columns pooled per frame)."""
    name, opts = NAMED[method]
    out = desc.output_geometry
    local = desc.layers[-1].local
    geo = FrameGeometry(out.rf, out.stride, out.offset) if local else None
    windows = attribute_frames(desc.module, x, frames=frames.tolist(), classes=scores.argmax(0), method=name,
                               geometry=geo, output="windows", max_frames=0, **opts)
    prof, cols = windows.profile()
    prof, cols = prof.double().numpy(), cols.numpy()
    best = np.zeros(len(frames), np.int64)
    for i in range(len(frames)):
        fr = to_frame(cols[i])
        lo = fr.min()
        pooled = np.bincount(fr - lo, weights=prof[i])
        best[i] = lo + int(pooled.argmax())
    return best


def pattern_measures(desc: ModelDescription, utts: list[Utterance], methods: list[str], group_of: Callable,
                     n_groups: int, half: int = 40, bootstrap: int = 100, seed: int = 0, min_count: int = 20,
                     on_error: Callable | None = None, progress: Callable | None = None) -> dict:
    """F3 and F4 over ``utts`` (see the module docstring). ``group_of(symbols)`` maps output indices
    to groups ``0..n_groups-1`` (-1: not a group)."""
    weights = bootstrap_weights(np.arange(len(utts)), bootstrap, seed)
    sums: PatternSums | None = None
    blank = desc.output.blank
    used = 0
    for k, u in enumerate(utts):
        if progress and k % 20 == 0:
            progress(f"findings: patterns {k + 1}/{len(utts)}")
        try:
            x = torch.as_tensor(utterance_features(u, desc.features), dtype=next(desc.module.parameters()).dtype)[None]
            scores, rows, to_frame = pattern_space(desc, x)
            symbol, frames = emission_frames(np.ascontiguousarray(scores.numpy()), blank)
            groups = group_of(symbol)
            ok = groups >= 0
            symbol, frames, groups = symbol[ok], frames[ok], groups[ok]
            out = desc.output_geometry
            nominal = np.clip(to_frame(np.rint(out.centre(0) + out.stride * frames)), 0, rows.shape[0] - 1)
            placed = {"nominal": nominal}
            for m in methods:
                placed[m] = evidence(desc, x, scores, frames, m, to_frame) if len(frames) else nominal
        except (InputError, ValueError, RuntimeError) as e:
            if on_error is None:
                raise
            on_error(u, e if isinstance(e, InputError) else InputError(u.audio_path or u.id, str(e)))
            continue
        if sums is None:
            sums = PatternSums(["nominal", *methods], n_groups, 2 * half + 1, rows.shape[1], weights)
        for align, centres in placed.items():
            sums.add(k, align, rows, groups, np.asarray(centres, np.int64))
        used += 1
    if sums is None:
        raise InputError("corpus", "no utterance gave patterns (none could be read)")
    keep = np.flatnonzero(sums.count["nominal"][:, half] >= min_count)
    point = {a: statistics(sums.sum[a], sums.count[a], keep) for a in sums.sum}
    boot = {a: [statistics(sums.boot_sum[a][b].astype(np.float64), sums.boot_count[a][b].astype(np.float64), keep)
                for b in range(bootstrap)] for a in sums.sum}
    return {"utterances": used, "groups": int(len(keep)), "F3": _f3(point["nominal"], boot["nominal"]),
            "F4": {m: _f4(point[m], point["nominal"], boot[m], boot["nominal"]) for m in methods}}


def _f3(point: dict, boot: list[dict]) -> dict:
    """Normalizing lowers the mean pairwise cosine: raw, normalized and their difference."""
    diff = [b["raw_cosine"] - b["normalized_cosine"] for b in boot]
    drop = point["raw_cosine"] - point["normalized_cosine"]
    return {"raw_cosine": {"value": point["raw_cosine"],
                           "ci": list(shifted_interval([b["raw_cosine"] for b in boot], point["raw_cosine"]))},
            "normalized_cosine": {"value": point["normalized_cosine"], "ci": list(shifted_interval(
                [b["normalized_cosine"] for b in boot], point["normalized_cosine"]))},
            "drop": {"value": drop, "ci": list(shifted_interval(diff, drop)), "p": _share_at_most(diff, drop, 0.0)}}


def _f4(aligned: dict, nominal: dict, boot_a: list[dict], boot_n: list[dict]) -> dict:
    """RMS of the aligned / nominal normalized patterns (> 1: aligning sharpens them)."""
    ratio = [a["rms"] / n["rms"] if n["rms"] > 0 else float("nan") for a, n in zip(boot_a, boot_n)]
    value = aligned["rms"] / nominal["rms"] if nominal["rms"] > 0 else float("nan")
    return {"value": value, "ci": list(shifted_interval(ratio, value)), "p": _share_at_most(ratio, value, 1.0),
            "normalized_cosine": aligned["normalized_cosine"]}


def _share_at_most(values: list[float], estimate: float, bound: float) -> float:
    """One-sided bootstrap p of "the statistic exceeds ``bound``": (1 + #{bias-shifted resample ≤
    bound}) / (1 + resamples), the resamples moved by their bias as in `shifted_interval`."""
    v = np.array([x for x in values if x == x])
    if not v.size or estimate != estimate:
        return float("nan")
    v = v + (estimate - v.mean())
    return float((1 + np.sum(v <= bound)) / (1 + v.size))
