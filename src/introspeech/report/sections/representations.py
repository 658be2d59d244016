"""Report section: where phones live (scores per layer with intervals, CKA between layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>{{ frames }} frames of {{ utterances }} utterances ({{ per }} per utterance, at the same times in every layer),
labelled with the phone that contains the centre of their receptive field and the letter of the forced alignment.
<em>Probes</em>: logistic regression on standardized activations, trained and tested on different utterances;
<em>control</em>: each phone mapped to a random class (Hewitt &amp; Liang), <em>selectivity</em> = probe − control;
<em>random network</em>: the same probe on a re-initialized copy. <em>CKA</em>: linear CKA with the phone one-hot
labels. <em>NAP silhouette</em>: the phoneme NAPs of these frames grouped by manner. Bars: 95 % bootstrap
intervals over utterances; p: permutation tests over labels.</p>
<figure><img src="{{ scores }}" alt="scores per layer"></figure>
<figure><img src="{{ cka }}" alt="CKA between layers"></figure>
<table><tr><th>layer</th><th>probe phones</th><th>control</th><th>selectivity</th><th>random network</th>
<th>probe letters</th><th>CKA phones</th><th>NAP silhouette</th><th>p (probe, CKA, silhouette)</th></tr>
{% for name, cells, p in rows %}<tr><td>{{ name }}</td>{% for v in cells %}<td>{{ v }}</td>{% endfor %}<td>{{ p }}</td></tr>
{% endfor %}</table>
{% if topo %}<h3>Topographic activation maps</h3>
<p>Each layer's channels laid out by MDS of the correlation distance between their phoneme profiles; each
map is one phoneme's contrastive NAP over that layout (red: above the mean of all phonemes). Layout score:
profile correlation with the 5 nearest channels minus that with all others (p: channels shuffled).</p>
<figure><img src="{{ topo }}" alt="topographic activation maps"></figure>{% endif %}
<p>{{ findings }}</p>
"""
TOPO_PHONES = ("AA", "IY", "S", "SH", "M", "N", "T", "K")
KEYS = ("probe_phones", "control_phones", "selectivity_phones", "random_init_probe_phones", "probe_letters",
        "cka_phones", "nap_silhouette")


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def scores_figure(summary: dict, path: Path, compare: dict | None = None, names: tuple[str, str] = ("", "")) -> Path:
    """Scores per layer with their intervals; ``compare``: a second run (e.g. on real speech) over
    the same layers, dashed, for the phone instruments."""
    layers = list(summary["layers"])
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(9, 3.4 if compare is None else 4.2))
    runs = [(summary, "-", names[0])] + ([(compare, "--", names[1])] if compare is not None else [])
    colors = {}
    for run, style, suffix in runs:
        for key, label in (("probe_phones", "probe phones"), ("selectivity_phones", "selectivity"),
                           ("random_init_probe_phones", "random network"), ("probe_letters", "probe letters"),
                           ("cka_phones", "CKA phones"), ("nap_silhouette", "NAP silhouette")):
            rows = [run["layers"].get(n) for n in layers]
            if any(r is None for r in rows) or (style == "--" and key in ("random_init_probe_phones", "probe_letters")):
                continue
            y = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
            ci = [r["ci"].get(key) for r in rows]
            kw = {"marker": "o", "ms": 3, "lw": 1, "ls": style, "label": f"{label}{suffix}", "color": colors.get(key)}
            if all(c is not None and None not in c for c in ci):
                lo, hi = np.array([c[0] for c in ci]), np.array([c[1] for c in ci])
                line = ax.errorbar(x, y, yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)], capsize=2,
                                   **kw).lines[0]
            else:
                line = ax.plot(x, y, **kw)[0]
            colors.setdefault(key, line.get_color())
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, fontsize=7)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return save(fig, path)


def cka_figure(summary: dict, path: Path) -> Path:
    names, m = summary["cka_layers"]["layers"], np.array(summary["cka_layers"]["matrix"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    fig.colorbar(im, ax=ax)
    ax.set_title("linear CKA between layers", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def topography_figure(summary: dict, maps: dict, path: Path, layers: int = 4) -> Path | None:
    """A grid: rows are layers (evenly spaced), columns the phonemes of `TOPO_PHONES` they have."""
    from ...representations.topography import smooth_map

    names = [n for n in summary["layers"] if maps.get(n)]
    if not names:
        return None
    names = [names[int(i)] for i in np.linspace(0, len(names) - 1, min(layers, len(names)))]
    fig, axes = plt.subplots(len(names), len(TOPO_PHONES), figsize=(1.3 * len(TOPO_PHONES), 1.4 * len(names)),
                             squeeze=False)
    for r, n in enumerate(names):
        m = maps[n]
        for c, ph in enumerate(TOPO_PHONES):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if ph in m["phonemes"]:
                img = smooth_map(m["coords"], m["naps"][m["phonemes"].index(ph)])
                lim = float(np.abs(img).max()) or 1.0
                ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
            if r == 0:
                ax.set_title(ph, fontsize=8)
            if c == 0:
                score = summary["layers"][n].get("topography_score")
                ax.set_ylabel(f"{n}\n{_fmt(score)}", fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def representations_section(summary: dict, out_dir: Path, maps: dict | None = None, compare: dict | None = None,
                            names: tuple[str, str] = ("", "")) -> Section:
    """The section; ``compare`` (another run's summary, e.g. on real speech) is drawn dashed beside
    it, ``names`` label the two runs."""
    out_dir = Path(out_dir)
    topo = topography_figure(summary, maps, out_dir / "figures" / "topography.png") if maps else None
    scores = scores_figure(summary, out_dir / "figures" / "representations.png", compare,
                           tuple(f" ({n})" if n else "" for n in names))
    cka = cka_figure(summary, out_dir / "figures" / "cka_layers.png")
    rows = [(n, [_fmt(r[k]) for k in KEYS],
             ", ".join(_fmt(r["p"].get(k)) for k in ("probe_phones", "cka_phones", "nap_silhouette")))
            for n, r in summary["layers"].items()]
    html = fragment(TEMPLATE, frames=summary["frames"], utterances=summary["utterances"],
                    per=summary["settings"]["per_utterance"], scores=scores.relative_to(out_dir),
                    cka=cka.relative_to(out_dir), rows=rows,
                    findings="; ".join(summary["findings"]) + "." + (
                        f" {names[1] or 'Compared run'}: " + "; ".join(compare["findings"]) + "." if compare else ""),
                    topo=topo.relative_to(out_dir) if topo else None)
    return Section("Where phones live", html, [scores, cka] + ([topo] if topo else []))
