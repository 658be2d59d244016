"""The seed's claims, each with the rule that says whether a model's measures reproduce it.

One definition per claim: what the seed says, which measure tests it, and the verdict from the
measured values and their intervals (a claim is reproduced only when its interval agrees).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    key: str
    says: str
    measure: str
    verdict: Callable[[dict], dict | None]  # stage results of one model and corpus → verdict (None: not measured)


def _fmt(v: float, ci: list | None = None) -> str:
    if v is None or v != v:
        return "—"
    return f"{v:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and ci[0] == ci[0] else "")


def _f1(r: dict) -> dict | None:
    fr = r.get("frames")
    if not fr:
        return None
    f1, layers = fr["F1"], fr["layers"]
    vals = {n: v["value"] for n, v in f1.items() if v["value"] == v["value"]}
    best = max(vals, key=vals.get)
    last = f1[layers[-1]]
    others_hi = max((f1[n]["ci"][1] for n in layers[:-1] if f1[n]["ci"][1] == f1[n]["ci"][1]), default=float("nan"))
    holds = best == layers[-1] and last["ci"][0] > others_hi
    return {"value": f"{fr['units']} η² at {layers[-1]} {_fmt(last['value'], last['ci'])}; peak {best} "
                     f"{_fmt(vals[best])}", "holds": bool(holds), "p": last["p"]}


def _f2(r: dict) -> dict | None:
    fr = r.get("frames")
    if not fr:
        return None
    peaks = fr["F2"]["peaks"]
    man = peaks["manner"]
    if man["layer"] is None:
        return None
    row = fr["F2"]["layers"]["manner"][man["layer"]]
    text = "; ".join(f"{k} peaks at depth {_fmt(v['depth'], v['depth_ci'])} ({v['layer']})" for k, v in peaks.items()
                     if v["layer"])
    return {"value": f"manner silhouette {_fmt(row['value'], row['ci'])}; {text}",
            "holds": bool(man["depth_ci"][0] >= 0.5), "p": row["p"]}


def _f3(r: dict) -> dict | None:
    pt = r.get("patterns")
    if not pt or pt["groups"] < 2:  # not a CTC model, or too few frequent symbols
        return None
    f3 = pt["F3"]
    return {"value": f"mean cosine raw {_fmt(f3['raw_cosine']['value'], f3['raw_cosine']['ci'])} → normalized "
                     f"{_fmt(f3['normalized_cosine']['value'], f3['normalized_cosine']['ci'])}",
            "holds": bool(f3["drop"]["ci"][0] > 0), "p": f3["drop"]["p"]}


def _f4(r: dict) -> dict | None:
    pt = r.get("patterns")
    if not pt or pt["groups"] < 2:
        return None
    f4 = pt["F4"]
    text = "; ".join(f"{m} {_fmt(v['value'], v['ci'])}" for m, v in f4.items())
    return {"value": f"RMS aligned / nominal: {text}", "holds": bool(any(v["ci"][0] > 1 for v in f4.values())),
            "p": min(v["p"] for v in f4.values())}


def _f5(r: dict) -> dict | None:
    sn = r.get("sanity")
    if not sn:
        return None
    rows = sn["methods"]
    text = "; ".join(f"{m} {_fmt(v['value'], v['ci'])}" for m, v in rows.items())
    passing = [m for m, v in rows.items() if v["ci"][1] < 0.5]
    return {"value": f"Spearman |map| after full randomization: {text}", "holds": bool(passing),
            "passing": passing}


def _f6(r: dict) -> dict | None:
    ex = r.get("explanations")
    if not ex:
        return None
    rows = ex["methods"]
    best = min(rows, key=lambda m: rows[m]["deletion_auc"]["value"])
    parts = [f"most faithful (deletion) {best} {_fmt(rows[best]['deletion_auc']['value'], rows[best]['deletion_auc']['ci'])}"]
    holds = None
    if "cp_lrp" in rows and "loo_agreement" in rows["cp_lrp"]:
        cp, attn = rows["cp_lrp"]["loo_agreement"], rows["lrp_epsilon"]["loo_agreement"]
        parts.append(f"agreement with leave-one-out: CP-LRP {_fmt(cp['value'], cp['ci'])}, AttnLRP "
                     f"{_fmt(attn['value'], attn['ci'])}")
        holds = bool(cp["ci"][0] > attn["ci"][1]) if cp["value"] == cp["value"] else None
    return {"value": "; ".join(parts), "holds": holds}


def _f7(r: dict) -> dict | None:
    fr = r.get("frames")
    if not fr:
        return None
    f7, depth = fr["F7"], fr["depth"]
    probe = {n: v["probe"]["value"] for n, v in f7.items() if v["probe"]["value"] == v["probe"]["value"]}
    best = max(probe, key=probe.get)
    cka = {n: v["cka"]["value"] for n, v in f7.items()}
    best_cka = max(cka, key=cka.get)
    row = f7[best]
    return {"value": f"probe peaks at {best} (depth {depth[best]:.2f}) {_fmt(row['probe']['value'], row['probe']['ci'])},"
                     f" selectivity {_fmt(row['selectivity'])}; CKA peaks at {best_cka} (depth {depth[best_cka]:.2f})",
            "holds": bool(0.5 <= depth[best] < 1.0), "p": row["probe"]["p"]}


CLAIMS: tuple[Claim, ...] = (
    Claim("F1", "output units separate best at the output", "η² of the output units per layer (letters; hama: "
          "its tokens; Whisper's encoder: the corpus' phones)", _f1),
    Claim("F2", "phoneme classes emerge with depth (clusters sharpen in the upper layers)",
          "silhouette of phoneme NAPs by manner, place and voicing; relative depth of the peak", _f2),
    Claim("F3", "unit-specific patterns appear after subtracting the mean pattern",
          "mean pairwise cosine of raw and normalized patterns (nominal)", _f3),
    Claim("F4", "aligning on the relevance sharpens the patterns", "RMS of aligned / nominal normalized patterns "
          "per relevance method", _f4),
    Claim("F5", "some explanations depend on the parameters (pass cascading randomization)",
          "Spearman |map| after full cascading randomization (passes < 0.5)", _f5),
    Claim("F6", "CP-LRP agrees with leave-one-out better than AttnLRP (You et al. 2025)",
          "deletion/insertion/ROAD AUC, phone share; rank agreement with leave-one-out spans", _f6),
    Claim("F7", "phones live in the upper-middle layers (not at the output)",
          "phone probe accuracy, control-task selectivity, CKA with phones per layer", _f7),
)


def verdicts(models: dict) -> dict:
    """Per claim, model and corpus: the value with its interval, whether it holds, and p."""
    return {c.key: {"says": c.says, "measure": c.measure,
                    "results": {m: {corpus: c.verdict(r) for corpus, r in cs.items()} for m, cs in models.items()}}
            for c in CLAIMS}
