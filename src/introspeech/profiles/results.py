"""From accumulated sums to NAPs, patterns, cluster quality and findings; saving and loading.

Saved results are the raw sums (``profiles.npz``, float64, array names as in accumulators.py) and a
JSON file naming every array's axes, the groups, layers, settings, feature and model config, so they
can be re-plotted or merged later without recomputing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..asr.model import Geometry
from ..audio import FeatureConfig
from ..errors import InputError
from ..text import BLANK, LETTERS
from .accumulators import total
from .cluster import cluster_quality, mean_pairwise_cosine
from .engine import Accumulated
from .settings import Layout, ProfileSettings

FORMAT = "introspeech-profiles/1"
AXES = {"nap/*/*/sum": ["group", "channel"], "nap/*/*/count": ["group"], "nap/*/*/sumsq": ["channel"],
        "wnap/*/*/sum": ["group", "time", "channel"], "wnap/*/*/count": ["group", "time"],
        "anap/*/*/sum": ["group", "time", "channel"], "anap/*/*/count": ["group", "time"],
        "pattern/*/*/sum": ["group", "time", "mel"], "pattern/*/*/count": ["group", "time"],
        "shift/hist": ["shift"], "totals": ["utterances, input frames, letter occurrences, phoneme occurrences"]}


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Sums over counts (the count's axes lead the sum's)."""
    if total.ndim > count.ndim:
        count = count.reshape(count.shape + (1,) * (total.ndim - count.ndim))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def naps(acc: Accumulated, layer: str, kind: str, windowed: bool = False, adjusted: bool = False) -> np.ndarray:
    """Mean activation per group: ``(group, channel)``, or ``(group, time, channel)`` when windowed.
    Groups never seen are NaN."""
    prefix = "anap" if adjusted else "wnap" if windowed else "nap"
    key = f"{prefix}/{layer}/{kind}"
    if f"{key}/sum" not in acc.arrays:
        raise KeyError(f"no {prefix} accumulated for layer {layer!r} and {kind} (settings: {acc.settings.to_dict()})")
    return _mean(acc.arrays[f"{key}/sum"], acc.arrays[f"{key}/count"])


def present(acc: Accumulated, kind: str, min_count: int = 1) -> np.ndarray:
    """Indices of the groups with at least ``min_count`` frames (in the output layer)."""
    return np.flatnonzero(acc.arrays[f"nap/{acc.layout.layers[-1]}/{kind}/count"] >= min_count)


def contrastive(nap: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """NAP_g − mean_h NAP_h over the groups present (rows without NaN); size-weighted with ``counts``."""
    if nap.shape[0] == 0:  # no group has frames enough (a tiny corpus)
        return nap
    ok = ~np.isnan(nap.reshape(nap.shape[0], -1)).any(1)
    w = np.where(ok, 1.0 if counts is None else counts, 0.0)
    mean = np.tensordot(w / w.sum(), np.nan_to_num(nap), axes=1)
    return nap - mean


def patterns(acc: Accumulated, kind: str, align: str = "aligned") -> tuple[np.ndarray, np.ndarray]:
    """Average input window per group ``(group, mel, time)`` and the same minus the average over all
    windows of all groups (the letter-specific part)."""
    total, count = acc.arrays[f"pattern/{kind}/{align}/sum"], acc.arrays[f"pattern/{kind}/{align}/count"]
    raw = _mean(total, count)  # (group, time, mel)
    grand = _mean(total.sum(0)[None], count.sum(0)[None])
    return raw.transpose(0, 2, 1), (raw - grand).transpose(0, 2, 1)


def separation(acc: Accumulated, layer: str, kind: str) -> float:
    """η²: the share of the layer's activation variance (over all frames that have a group, summed
    over channels) that group membership explains: between-group / total sum of squares."""
    key = f"nap/{layer}/{kind}"
    return eta_squared(acc.arrays[f"{key}/sum"], acc.arrays[f"{key}/count"], acc.arrays[f"{key}/sumsq"])


def eta_squared(s: np.ndarray, n: np.ndarray, sq: np.ndarray) -> float:
    """Between-group / total sum of squares from per-group sums ``(group, channel)``, group counts
    and per-channel sums of squares (summed over channels)."""
    keep = n > 0
    total_n = n.sum()
    if total_n == 0:
        return float("nan")
    grand = s.sum(0)
    sst = (sq - grand ** 2 / total_n).sum()
    ssb = ((s[keep] ** 2 / n[keep, None]).sum(0) - grand ** 2 / total_n).sum()
    return float(ssb / sst) if sst > 0 else float("nan")


def layer_scores(acc: Accumulated, metric: str = "cosine", min_count: int = 20) -> dict[str, dict]:
    """Per layer: letter separation (η²) and the quality of phoneme NAP clusters w.r.t. phonetic
    categories (silhouette and adjusted Rand index of the cut tree), see cluster.py."""
    out: dict[str, dict] = {}
    for layer in acc.layout.layers:
        row: dict[str, float] = {}
        for kind in acc.settings.groups:
            row[f"{kind}_eta2"] = separation(acc, layer, kind)
            idx = present(acc, kind, min_count)
            names = [acc.layout.groups(kind)[i] for i in idx]
            q = cluster_quality(contrastive(naps(acc, layer, kind)[idx]), names, kind, metric)
            row.update({f"{kind}_{k}": v for k, v in q.items()})
        row["letters"] = row.get("letters_eta2", float("nan"))
        row["phonemes"] = row.get("phonemes_silhouette", float("nan"))
        out[layer] = row
    return out


def findings(acc: Accumulated, scores: dict[str, dict]) -> dict:
    """The seed's claims, measured (see the issue): pattern similarity raw vs normalized, alignment
    contrast, and where letters and phoneme categories separate best."""
    f: dict = {}
    idx = present(acc, "letters", 20) if "letters" in acc.settings.groups else []
    if len(idx):
        for align in ("aligned", "nominal"):
            if f"pattern/letters/{align}/sum" not in acc.arrays:
                continue
            raw, norm = patterns(acc, "letters", align)
            f[f"letters_{align}"] = {
                "raw_mean_cosine": mean_pairwise_cosine(raw[idx].reshape(len(idx), -1)),
                "normalized_mean_cosine": mean_pairwise_cosine(norm[idx].reshape(len(idx), -1)),
                "normalized_rms": float(np.sqrt(np.nanmean(norm[idx] ** 2))),
            }
        if "letters_aligned" in f:
            nominal = f["letters_nominal"]["normalized_rms"]  # 0 when a single letter is ever emitted: no ratio
            f["alignment_contrast_ratio"] = f["letters_aligned"]["normalized_rms"] / nominal if nominal > 0 else None
            hist = acc.arrays["shift/hist"]
            half = (hist.size - 1) // 2
            shifts = np.arange(-half, half + 1)
            if hist.sum():
                f["shift_input_frames"] = {"mean": float((hist * shifts).sum() / hist.sum()),
                                           "median": float(shifts[np.searchsorted(np.cumsum(hist), hist.sum() / 2)])}
    layers = list(scores)
    for key in ("letters", "phonemes"):
        vals = {k: v[key] for k, v in scores.items() if not np.isnan(v.get(key, np.nan))}
        if vals:
            f[f"best_layer_{key}"] = max(vals, key=vals.get)
            f[f"{key}_by_depth"] = [round(vals.get(k, np.nan), 4) for k in layers]
    return f


def save(acc: Accumulated, folder: str | Path, model_config: dict | None = None) -> Path:
    """Write ``profiles.npz`` (raw sums) and ``profiles.json`` (axes, groups, layout, settings)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "profiles.npz", **acc.arrays)
    meta = {"format": FORMAT, "axes": AXES, "groups": {k: list(acc.layout.groups(k)) for k in acc.settings.groups},
            "blank": acc.layout.blank,
            "layers": list(acc.layout.layers), "channels": list(acc.layout.channels),
            "geometry": [[g.rf, g.stride, g.offset] for g in acc.layout.geometry], "n_mels": acc.layout.n_mels,
            "paths": list(acc.layout.paths), "time_axes": list(acc.layout.time_axes), "local": acc.layout.local,
            "settings": acc.settings.to_dict(), "features": acc.features.to_dict(), "model": model_config,
            "utterances": acc.utterances, "errors": acc.errors}
    (folder / "profiles.json").write_text(json.dumps(meta, indent=1))
    return folder


def load(folder: str | Path) -> Accumulated:
    """Read results written by `save` (no model or corpus needed)."""
    folder = Path(folder)
    meta_path = folder / "profiles.json"
    if not meta_path.is_file():
        raise InputError(meta_path, "no profiles here (run `introspeech naps` or `patterns` first)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(meta_path, f"unknown format {meta.get('format')!r} (expected {FORMAT})")
    with np.load(folder / "profiles.npz") as z:
        arrays = {k: z[k] for k in z.files}
    try:
        letters = tuple(meta["groups"].get("letters", LETTERS))
        layout = Layout(tuple(meta["layers"]), tuple(meta["channels"]), tuple(Geometry(*g) for g in meta["geometry"]),
                        meta["n_mels"], tuple(meta.get("paths", ())), letters, meta.get("blank", BLANK),
                        tuple(meta.get("time_axes", ())), meta.get("local", True))
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(meta_path, f"inconsistent profile metadata ({e}); recompute without --replot") from None
    return Accumulated(arrays, layout, ProfileSettings.from_dict(meta["settings"]),
                       FeatureConfig.from_dict(meta["features"]), meta["errors"], meta["utterances"])


SCORES = {"letters": "η²: share of the layer's activation variance (frames with a letter) explained by the letter",
          "phonemes": "silhouette of the phoneme NAPs (contrastive, {metric} distance) grouped by manner of articulation"}


def summary(acc: Accumulated, metric: str = "cosine") -> dict:
    """What ``DIR/summary.json`` holds: per-layer scores, their meaning, and the findings."""
    scores = layer_scores(acc, metric)
    return {"layers": scores, "scores": {k: v.format(metric=metric) for k, v in SCORES.items()},
            "findings": findings(acc, scores), "utterances": acc.utterances,
            "occurrences": {"letters": total(acc.arrays, "letters"), "phonemes": total(acc.arrays, "phonemes")},
            "errors": acc.errors}
