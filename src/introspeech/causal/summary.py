"""From a `Sweep`'s per-utterance sums to effects with bootstrap intervals, random bands,
permutation p-values and attribution patching's agreement; saving and loading the sweep."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from .ablation import RANKINGS, Sweep

ARRAYS = ("count", "kind_count", "target", "kind_all", "random", "patched")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _effects(sw: Sweep, w: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group-averaged effect and selectivity ``(..., L, 2, K)`` and random effect ``(..., L, K, D)``
    for utterance weights ``w`` ``(B, U)`` over the groups ``cols``."""
    cnt = w @ sw.count[:, cols]  # (B, G)
    other = w @ (sw.kind_count[:, cols] - sw.count[:, cols])
    tgt = np.einsum("bu,ulrkg->blrkg", w, sw.target[..., cols])
    alls = np.einsum("bu,ulrkg->blrkg", w, sw.kind_all[..., cols])
    rnd = np.einsum("bu,ulkdg->blkdg", w, sw.random[..., cols])
    eff = _ratio(tgt, cnt[:, None, None, None])
    sel = eff - _ratio(alls - tgt, other[:, None, None, None])
    with warnings.catch_warnings():  # a cell without a number (k wider than its layer) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(eff, -1), np.nanmean(sel, -1), np.nanmean(_ratio(rnd, cnt[:, None, None, None]), -1)


def summarize(sw: Sweep, boot: int = 1000, seed: int = 0) -> dict:
    """Per layer, kind, ranking and k: effect and selectivity (nats per entry, group-averaged) with
    95 % bootstrap intervals over utterances, the random units' mean and 95 % band, the
    permutation p; attribution patching's Spearman correlation with the exact drops."""
    rng = np.random.default_rng(seed)
    n = len(sw.utterances)
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=boot)])  # row 0: the sample itself
    out: dict = {"utterances": n, "basis": sw.basis, "layers": sw.layers, "ks": sw.ks, "rankings": list(RANKINGS),
                 "groups": [f"{k}:{g}" for k, g in sw.groups], "skipped": len(sw.errors), "results": {}}
    for kind in sorted({k for k, _ in sw.groups}):
        cols = np.array([j for j, (k, _) in enumerate(sw.groups) if k == kind])
        eff, sel, rnd = _effects(sw, weights, cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = (np.nanpercentile(eff[1:], q, axis=0) for q in (2.5, 97.5))
            slo, shi = (np.nanpercentile(sel[1:], q, axis=0) for q in (2.5, 97.5))
        res = out["results"][kind] = {}
        for li, layer in enumerate(sw.layers):
            res[layer] = {}
            for r, ranking in enumerate(RANKINGS):
                rows = []
                for ki, k in enumerate(sw.ks):
                    if not np.isfinite(eff[0, li, r, ki]):  # k exceeds this layer's width, or no entry
                        continue
                    draws = rnd[0, li, ki]
                    p = (1 + int(np.sum(draws >= eff[0, li, r, ki]))) / (len(draws) + 1)
                    rows.append({"k": k, "effect": eff[0, li, r, ki], "effect_ci": [lo[li, r, ki], hi[li, r, ki]],
                                 "selectivity": sel[0, li, r, ki], "selectivity_ci": [slo[li, r, ki], shi[li, r, ki]],
                                 "random": float(np.mean(draws)),
                                 "random_band": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
                                 "p": p})
                res[layer][ranking] = rows
        out["groups_per_kind"] = {**out.get("groups_per_kind", {}), kind: len(cols)}
    exact = _ratio(sw.target.sum(0), sw.count.sum(0)).ravel()
    est = _ratio(sw.patched.sum(0), sw.count.sum(0)).ravel()
    ok = np.isfinite(exact) & np.isfinite(est)
    rho = float(spearmanr(exact[ok], est[ok])[0]) if ok.sum() > 2 and np.ptp(exact[ok]) and np.ptp(est[ok]) else None
    out["attribution_patching"] = {"spearman": rho, "pairs": int(ok.sum())}
    out["findings"] = findings(out)
    return json.loads(json.dumps(out, default=float))


def findings(s: dict) -> dict:
    """Counts people read first: in how many (layer, kind, k) cells the NAP-ranked units beat the
    random band (permutation p ≤ 0.05), the same for the gradient ranking, and which ranking has the larger
    effect more often."""
    cells = [(kind, layer, r) for kind, per in s["results"].items() for layer, rs in per.items() for r in rs]
    out = {}
    for ranking in RANKINGS:
        rows = [row for kind, layer, r in cells if r == ranking for row in s["results"][kind][layer][r]]
        out[f"{ranking}_beats_random"] = f"{sum(row['p'] <= 0.05 for row in rows)} of {len(rows)}"
    pairs = [(a["effect"], b["effect"]) for kind, per in s["results"].items() for layer in per
             for a, b in zip(per[layer]["nap"], per[layer]["gradient"])]
    out["nap_larger_than_gradient"] = f"{sum(a > b for a, b in pairs)} of {len(pairs)}"
    return out


def save(sw: Sweep, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "sweep.npz", **{k: getattr(sw, k) for k in ARRAYS})
    meta = {"layers": sw.layers, "groups": sw.groups, "ks": sw.ks, "utterances": sw.utterances, "errors": sw.errors,
            "basis": sw.basis,
            "units": {"|".join(map(str, k)): v[:max(sw.ks)].tolist() for k, v in sw.units.items()}}
    (folder / "sweep.json").write_text(json.dumps(meta))
    return folder


def load(folder: str | Path) -> Sweep:
    folder = Path(folder)
    meta = json.loads((folder / "sweep.json").read_text())
    arrays = np.load(folder / "sweep.npz")
    units = {}
    for key, v in meta["units"].items():
        layer, ranking, kind, g = key.split("|")
        units[(layer, ranking, kind, int(g))] = np.asarray(v)
    return Sweep(meta["layers"], [tuple(g) for g in meta["groups"]], meta["ks"], units,
                 *(arrays[k] for k in ARRAYS), meta["utterances"], meta["errors"], meta.get("basis", "neurons"))
