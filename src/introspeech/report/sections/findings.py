"""Report section and README table of `introspeech findings`: one figure per layer-wise measure (a
curve per model and corpus over relative depth, with its 95 % interval), bars with intervals for the
pattern and method measures, and the claim × model × corpus table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...findings.claims import CLAIMS
from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>The seed's claims measured on each model and corpus (value [95 % bootstrap interval over
utterances]; p: permutation over labels, or for comparisons the bootstrap's share of resamples on the
other side). Each layer-wise curve runs over relative depth, 0 the first described layer and 1 the
last; solid: real speech, dashed: synthetic.</p>
<table><tr><th>claim</th><th>model</th><th>corpus</th><th>measured</th><th>reproduced</th></tr>
{% for row in rows %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td><td>{{ row[2] }}</td><td>{{ row[3] }}</td>
<td>{{ row[4] }}</td></tr>{% endfor %}</table>
{% for title, img in figures %}<figure><img src="{{ img }}" alt="{{ title }}"><figcaption>{{ title }}</figcaption></figure>
{% endfor %}
"""

CURVES = {
    "F1": ("η² of the output units", lambda fr, n: fr["F1"][n]),
    "F2 manner": ("phoneme NAP silhouette by manner", lambda fr, n: fr["F2"]["layers"]["manner"][n]),
    "F2 place": ("phoneme NAP silhouette by place (consonants)", lambda fr, n: fr["F2"]["layers"]["place"][n]),
    "F2 voicing": ("phoneme NAP silhouette by voicing (consonants)", lambda fr, n: fr["F2"]["layers"]["voicing"][n]),
    "F7 probe": ("phone probe accuracy", lambda fr, n: fr["F7"][n]["probe"]),
    "F7 CKA": ("linear CKA with phones", lambda fr, n: fr["F7"][n]["cka"]),
}


def verdict_word(v: dict | None) -> str:
    if v is None:
        return "not measured"
    return {True: "yes", False: "no", None: "—"}[v.get("holds")]


def table_rows(summary: dict) -> list[tuple[str, str, str, str, str]]:
    """(claim, model, corpus, measured value, reproduced) for every claim measured."""
    rows = []
    for c in CLAIMS:
        for model, corpora in summary["verdicts"][c.key]["results"].items():
            for corpus, v in corpora.items():
                if v is not None:
                    rows.append((f"{c.key} {c.says}", model, corpus, v["value"] + (f" (p {v['p']:.2f})" if v.get("p")
                                 == v.get("p") and v.get("p") is not None else ""), verdict_word(v)))
    return rows


def markdown_table(summary: dict) -> str:
    """The README's findings table."""
    lines = ["| claim | model | corpus | measured [95 % CI] | reproduced |", "| --- | --- | --- | --- | :---: |"]
    lines += [f"| {a} | {b} | {c} | {d.replace('|', '/')} | {e} |" for a, b, c, d, e in table_rows(summary)]
    return "\n".join(lines)


def curve_figure(summary: dict, key: str, path: Path) -> Path | None:
    title, get = CURVES[key]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = False
    for k, (model, corpora) in enumerate(summary["models"].items()):
        for corpus, stages in corpora.items():
            fr = stages.get("frames")
            if not fr:
                continue
            layers = fr["layers"]
            vals = [get(fr, n) for n in layers]
            x = np.array([fr["depth"][n] for n in layers])
            y = np.array([v["value"] for v in vals], float)
            lo = np.array([v["ci"][0] for v in vals], float)
            hi = np.array([v["ci"][1] for v in vals], float)
            style = "-" if corpus == "real" else "--"
            ax.plot(x, y, style, color=f"C{k}", marker=".", label=f"{model} · {corpus}")
            ax.fill_between(x, lo, hi, color=f"C{k}", alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("relative depth")
    ax.set_ylabel(title)
    ax.legend(fontsize=7)
    return save(fig, path)


def bar_figure(summary: dict, stage: str, pick, label: str, path: Path) -> Path | None:
    """Bars with intervals per model · corpus for each method of a stage (``pick(result)`` →
    {method: {"value", "ci"}})."""
    series = {}
    for model, corpora in summary["models"].items():
        for corpus, stages in corpora.items():
            if stages.get(stage):
                series[f"{model} · {corpus}"] = pick(stages[stage])
    if not series:
        return None
    methods = list(dict.fromkeys(m for s in series.values() for m in s))
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    width = 0.8 / len(series)
    for i, (name, rows) in enumerate(series.items()):
        xs = np.arange(len(methods)) + i * width
        v = np.array([rows.get(m, {}).get("value", np.nan) for m in methods], float)
        ci = np.array([rows.get(m, {}).get("ci", [np.nan, np.nan]) for m in methods], float)
        err = np.abs(np.stack([v - ci[:, 0], ci[:, 1] - v]))
        ax.bar(xs, v, width, yerr=np.nan_to_num(err), label=name, color=f"C{i}", capsize=2)
    ax.set_xticks(np.arange(len(methods)) + 0.4 - width / 2, methods, rotation=20, fontsize=7)
    ax.set_ylabel(label)
    ax.legend(fontsize=7)
    return save(fig, path)


def findings_section(summary: dict, out_dir: Path) -> Section:
    out_dir = Path(out_dir)
    figs = []
    for key, (title, _) in CURVES.items():
        p = curve_figure(summary, key, out_dir / "figures" / f"findings_{key.replace(' ', '_')}.png")
        if p:
            figs.append((f"{key}: {title}", p))
    bars = {
        "F4": ("patterns", lambda r: r["F4"], "RMS aligned / nominal (> 1: sharper)"),
        "F5": ("sanity", lambda r: r["methods"], "Spearman |map| after randomization (↓)"),
        "F6 deletion": ("explanations", lambda r: {m: v["deletion_auc"] for m, v in r["methods"].items()},
                        "deletion AUC (↓)"),
        "F6 leave-one-out": ("explanations", lambda r: {m: v["loo_agreement"] for m, v in r["methods"].items()
                                                        if "loo_agreement" in v}, "rank agreement with leave-one-out"),
    }
    for key, (stage, pick, label) in bars.items():
        p = bar_figure(summary, stage, pick, label, out_dir / "figures" / f"findings_{key.replace(' ', '_')}.png")
        if p:
            figs.append((f"{key}: {label}", p))
    html = fragment(TEMPLATE, rows=table_rows(summary),
                    figures=[(t, p.relative_to(out_dir).as_posix()) for t, p in figs])
    return Section("What models that learned from real speech tell us", html, [p for _, p in figs])


def findings_demo(net, out_dir: Path, per_split: int = 4, log=None) -> Section:
    """The findings' layer-wise measures (F1, F2, F7) of the built-in model and the installed
    real-speech models on a few forced-aligned clips of each real source (the full run:
    `introspeech findings`)."""
    from ...corpus.load import load_corpus
    from ...corpus.realspeech import build, install_hint
    from ...findings.run import FindingsSettings, run_findings
    from ...models.packaged import PACKAGED, describe_packaged

    out_dir = Path(out_dir)
    title = "What models that learned from real speech tell us"
    try:
        build(out_dir / "realspeech", splits=("asterisk_g722", "pocketsphinx", "alsa"), per_split=per_split)
    except FileNotFoundError:
        return Section(title, fragment("<p>No real-speech package is installed: {{ hint }}</p>", hint=install_hint()), [])
    utts = [u for us in load_corpus(out_dir / "realspeech").values() for u in us if u.phones]
    models = {net.name: net, **{name: (lambda name=name: describe_packaged(name)) for name, entry in PACKAGED.items()
                                 if entry.installed}}
    settings = FindingsSettings(per_utterance=20, bootstrap=30, permutations=19)
    summary = run_findings(models, {"real": utts}, out_dir / "findings", settings, ("frames",), progress=log)
    section = findings_section(summary, out_dir)
    missing = [f"{n} ({e.install})" for n, e in PACKAGED.items() if not e.installed]
    note = fragment("<p>Here: {{ n }} forced-aligned real clips ({{ per }} of each source), sampled frames only "
                    "(F1, F2, F7); <code>introspeech findings</code> runs every claim on the whole real corpus and the "
                    "synthetic test split.{% if missing %} Not installed: {{ missing }}.{% endif %}</p>",
                    n=len(utts), per=per_split, missing=", ".join(missing))
    return Section(section.title, note + section.html, section.files)
