"""Report section: class-conditional activation profiles of an image classifier (profiles.images):
η² per layer and the contrastive class profiles of every layer, clustered."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...profiles.cluster import tree
from ...profiles.images import ClassProfiles
from ...profiles.results import contrastive
from ..html import Section, fragment
from ..profile_figures import nap_heatmap, quality_plot

TEMPLATE = """
<p>Each example's channels are averaged over positions (what a global-average-pooling head reads) and
averaged per class, in every layer; η² is the share of the variance of those per-example vectors that
the class explains. {{ verdict }}</p>
<figure><img src="{{ quality }}" alt="class separation per layer"></figure>
<table><tr><th>layer</th><th>η²</th><th>mean {{ metric }} distance between classes</th></tr>
{% for layer, row in table %}<tr><td>{{ layer }}</td><td>{{ "%.3f"|format(row.classes_eta2) }}</td>
<td>{{ "%.3f"|format(row.classes_mean_distance) }}</td></tr>{% endfor %}</table>
{% for title, img in heatmaps %}<figure><img src="{{ img }}" alt="{{ title }}"><figcaption>{{ title }}</figcaption></figure>
{% endfor %}
"""


def class_summary(prof: ClassProfiles, metric: str = "cosine") -> dict:
    """``summary.json`` of an image model: scores per layer and where the classes separate best."""
    scores = prof.scores(metric)
    eta = {k: v["classes_eta2"] for k, v in scores.items() if not np.isnan(v["classes_eta2"])}
    findings = {"best_layer_classes": max(eta, key=eta.get), "classes_by_depth": [round(v, 4) for v in eta.values()]} \
        if eta else {}
    examples = int(next(iter(prof.arrays.values()))["count"].sum()) if prof.arrays else 0
    return {"layers": scores, "findings": findings, "examples": examples,
            "scores": {"classes_eta2": "η²: share of the per-example channel means' variance explained by the class"}}


def class_profiles_section(prof: ClassProfiles, out_dir: Path, summary: dict, metric: str = "cosine") -> Section:
    out_dir = Path(out_dir)
    scores = summary["layers"]
    quality = quality_plot(scores, out_dir / "figures" / "class_quality.png")
    heatmaps = []
    for layer, a in prof.arrays.items():
        keep = np.flatnonzero(a["count"] > 0)
        prof_c = contrastive(prof.profiles(layer)[keep], a["count"][keep])
        z, order = tree(prof_c, metric)
        title = f"{layer}: {len(keep)} classes"
        img = nap_heatmap(prof_c, [prof.classes[i] for i in keep], z, order, out_dir / "figures" / f"classes_{layer}.png",
                          title)
        heatmaps.append((title, img.relative_to(out_dir).as_posix()))
    f = summary["findings"]
    verdict = (f"Classes separate best in {f['best_layer_classes']} (η² by depth: "
               f"{', '.join(f'{v:.2f}' for v in f['classes_by_depth'])}).") if f else ""
    html = fragment(TEMPLATE, verdict=verdict, quality=quality.relative_to(out_dir).as_posix(), metric=metric,
                    table=list(scores.items()), heatmaps=heatmaps)
    return Section("Class activation profiles", html, [quality] + [out_dir / h for _, h in heatmaps])
