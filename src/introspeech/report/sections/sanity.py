"""Report section of the sanity checks: similarity curves, example maps and a verdict per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...sanity.check import SENSITIVE, final_means, verdicts
from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>Adebayo et al.'s sanity checks. Each method's maps of the trained model are compared with those of
copies whose layers are re-initialized from the output downwards (<em>cascading</em>), one layer at a time
(<em>independent</em>), and of the same architecture trained on permuted labels (<em>data</em>).
Similarity: Spearman rank correlation of |map| (solid) and of the signed map, SSIM and HOG rank
correlation of the normalized |map|; mean over {{ n }} examples per model. A method passes when the
mean Spearman |map| after full randomization is below {{ threshold }}.</p>
{% for model, info in models %}<h3>{{ model }}</h3>
{% if info.note %}<p>{{ info.note }}</p>{% endif %}
<figure><img src="{{ info.curves }}" alt="{{ model }}: similarity under cascading randomization"></figure>
<figure><img src="{{ info.grid }}" alt="{{ model }}: example maps under randomization"></figure>
<table><tr><th>method</th><th>Spearman |map|</th><th>Spearman</th><th>SSIM</th><th>HOG</th>
<th>data randomization: Spearman |map|</th><th>verdict</th></tr>
{% for m, row, data, verdict in info.rows %}<tr><td>{{ m }}</td>{% for v in row %}<td>{{ "%.2f"|format(v) }}</td>{% endfor %}
<td>{{ data }}</td><td>{{ verdict }}</td></tr>{% endfor %}</table>
{% endfor %}
"""


def curves(result: dict, path: Path, title: str) -> Path:
    """Spearman |map| vs randomized layers (cascading, solid) and per layer (independent, dotted)."""
    methods = list(result)
    cols = 4
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.3 * rows), squeeze=False, sharey=True)
    for ax, m in zip(axes.flat, methods):
        casc = result[m]["cascading"]
        x = np.arange(len(casc))
        ax.plot(x, [c["spearman_abs"]["mean"] for c in casc], "o-", ms=3, label="Spearman |map|")
        ax.plot(x, [c["spearman"]["mean"] for c in casc], "-", lw=1, label="Spearman")
        ax.plot(x, [c["ssim"]["mean"] for c in casc], "-", lw=1, label="SSIM")
        ax.plot(x, [c["hog"]["mean"] for c in casc], "-", lw=1, label="HOG")
        if result[m]["independent"]:
            ax.plot(x, [c["spearman_abs"]["mean"] for c in result[m]["independent"]], "k:", lw=1, label="independent")
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_title(m, fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels([c["layer"].split(".")[-1] for c in casc], rotation=90, fontsize=6)
        ax.set_ylim(-1.05, 1.05)
    for ax in list(axes.flat)[len(methods):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{title}: similarity to the trained model's maps as layers are randomized (output first)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def example_grid(result: dict, path: Path, columns: int = 5) -> Path:
    """One example's map per method (rows): trained, after randomizing some layers, permuted labels."""
    methods = list(result)
    keys = [k for k in result[methods[0]]["examples"] if k not in ("trained", "random labels")]
    pick = [keys[int(i)] for i in np.linspace(0, len(keys) - 1, min(columns, len(keys)))]
    cols = ["trained"] + pick + (["random labels"] if "random labels" in result[methods[0]]["examples"] else [])
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(1.5 * len(cols) + 1, 1.1 * len(methods)), squeeze=False)
    for i, m in enumerate(methods):
        for j, c in enumerate(cols):
            a = result[m]["examples"][c]
            lim = float(np.abs(a).max()) or 1.0
            origin = "upper" if a.shape[0] == a.shape[1] else "lower"  # images square, spectrograms Mel-up
            axes[i][j].imshow(a, origin=origin, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(c if c in ("trained", "random labels") else f"to {c.split('.')[-1]}", fontsize=8)
            if j == 0:
                axes[i][j].set_ylabel(m, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.1)
    return save(fig, path)


def sanity_section(results: dict[str, dict], out_dir: Path, notes: dict[str, str] | None = None,
                   n_examples: int = 0) -> Section:
    """``results``: model name → `run_case` output."""
    out_dir = Path(out_dir)
    models, files = [], []
    for name, result in results.items():
        c = curves(result, out_dir / "figures" / f"sanity_{name}_curves.png", name)
        g = example_grid(result, out_dir / "figures" / f"sanity_{name}_maps.png")
        files += [c, g]
        means, verdict = final_means(result), verdicts(result)
        rows = []
        for m, v in means.items():
            data = result[m].get("data")
            rows.append((m, [v["spearman_abs"], v["spearman"], v["ssim"], v["hog"]],
                         f"{data['spearman_abs']['mean']:.2f}" if data else "–", verdict[m]))
        models.append((name, {"curves": c.relative_to(out_dir), "grid": g.relative_to(out_dir), "rows": rows,
                              "note": (notes or {}).get(name, "")}))
    html = fragment(TEMPLATE, models=models, n=n_examples, threshold=SENSITIVE)
    return Section("Sanity checks", html, files)
