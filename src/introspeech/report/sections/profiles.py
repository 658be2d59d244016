"""Report sections of global introspection: letter/phoneme patterns and Neuron Activation Profiles.

Both are drawn from saved sums alone (`profiles.results.load`), so they can be re-plotted without
running the model again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...profiles import results as R
from ...profiles.accumulators import total
from ...profiles.cluster import tree
from ...profiles.engine import Accumulated
from ...profiles.labels import group_label
from ..html import Section, fragment
from ..profile_figures import nap_heatmap, pattern_grid, quality_plot, shift_histogram

PATTERNS = """
<p>Input windows (±{{ half_ms }} ms, z-normalized log-Mel) averaged over {{ n_letters }} emitted letters
and {{ n_phones }} phones of {{ n_utts }} utterances. <em>Aligned</em>: each letter's window is centred
where its {{ method }} relevance is largest ({{ align_by }}); <em>nominal</em>: at the centre of the
output frame's receptive field. <em>Normalized</em>: minus the average of all windows of all letters.</p>
<figure><img src="{{ grid }}" alt="letter patterns: raw and normalized, aligned and nominal"></figure>
<table>
<tr><th></th><th>mean pairwise cosine, raw</th><th>normalized</th><th>RMS of normalized</th></tr>
{% for name, row in rows %}<tr><td>{{ name }}</td><td>{{ "%.3f"|format(row.raw_mean_cosine) }}</td>
<td>{{ "%.3f"|format(row.normalized_mean_cosine) }}</td><td>{{ "%.3f"|format(row.normalized_rms) }}</td></tr>
{% endfor %}</table>
<p>{{ verdict }}</p>
{% if shift %}<figure><img src="{{ shift }}" alt="shift of the evidence relative to the receptive-field centre">
</figure>{% endif %}
{% if phones %}<p>Phoneme patterns (windows centred on the corpus' phone alignment), normalized:</p>
<figure><img src="{{ phones }}" alt="phoneme patterns"></figure>{% endif %}
"""

NAPS = """
<p>Neuron Activation Profiles: the mean activation of every channel over the frames of a letter
(forced alignment of the reference: {{ letters_from }}) or a phoneme (corpus alignment), made
contrastive (minus the mean over groups), per layer. Groups are ordered by average-linkage clustering
({{ metric }} distance, optimal leaf ordering). Scores per layer: {{ scores.letters }}; {{ scores.phonemes }}.</p>
<figure><img src="{{ quality }}" alt="cluster quality per layer"></figure>
<table><tr><th>layer</th>{% for k in keys %}<th>{{ k }}</th>{% endfor %}</tr>
{% for layer, row in table %}<tr><td>{{ layer }}</td>{% for v in row %}<td>{{ "%.3f"|format(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{{ verdict }}</p>
{% for title, img in heatmaps %}<figure><img src="{{ img }}" alt="{{ title }}"><figcaption>{{ title }}</figcaption></figure>
{% endfor %}
"""

PATTERN_LETTERS = "aeiosnrtlmdf"
PATTERN_PHONES = ("IY", "AA", "UW", "S", "SH", "F", "M", "N", "T", "K", "R", "sil")


def patterns_section(acc: Accumulated, out_dir: Path, summary: dict, min_count: int = 20) -> Section:
    out_dir = Path(out_dir)
    ms = 1000 / acc.features.frame_rate
    letter_names = acc.layout.groups("letters")
    letters = [i for i in R.present(acc, "letters", min_count) if letter_names[i].lower() in PATTERN_LETTERS]
    names = [group_label("letters", letter_names[i]) for i in letters]
    rows = []
    has_aligned = "pattern/letters/aligned/sum" in acc.arrays
    for align in (("aligned", "nominal") if has_aligned else ("nominal",)):
        raw, norm = R.patterns(acc, "letters", align)
        rows += [(f"{align}\nraw", raw[letters]), (f"{align}\nnormalized", norm[letters])]
    grid = pattern_grid(rows, names, out_dir / "figures" / "letter_patterns.png", ms)
    f = summary["findings"]
    table = [(a, f[f"letters_{a}"]) for a in ("aligned", "nominal") if f"letters_{a}" in f]
    verdict = []
    for a, row in table:
        verdict.append(f"{a}: normalizing lowers the mean cosine similarity between letter patterns from "
                       f"{row['raw_mean_cosine']:.2f} to {row['normalized_mean_cosine']:.2f}.")
    if f.get("alignment_contrast_ratio") is not None:
        r = f["alignment_contrast_ratio"]
        verdict.append(f"Aligned/nominal RMS of the normalized patterns = {r:.2f}: alignment "
                       + ("sharpens the patterns." if r > 1
                          else "does not sharpen them here (the seed's claim is not reproduced)."))
    shift = None
    if has_aligned:
        shift = shift_histogram(acc.arrays["shift/hist"], ms, out_dir / "figures" / "shift.png").relative_to(out_dir)
        if "shift_input_frames" in f:
            verdict.append(f"Median shift of the evidence: {f['shift_input_frames']['median'] * ms:.0f} ms.")
    phones = None
    if "pattern/phonemes/aligned/sum" in acc.arrays:
        idx = [i for i in R.present(acc, "phonemes", min_count) if acc.layout.groups("phonemes")[i] in PATTERN_PHONES]
        if idx:
            _, norm = R.patterns(acc, "phonemes", "aligned")
            phones = pattern_grid([("normalized", norm[idx])], [acc.layout.groups("phonemes")[i] for i in idx],
                                  out_dir / "figures" / "phoneme_patterns.png", ms).relative_to(out_dir)
    html = fragment(PATTERNS, half_ms=int(acc.settings.pattern_window * ms), n_letters=int(acc.arrays["shift/hist"].sum()),
                    n_phones=total(acc.arrays, "phonemes"), n_utts=acc.utterances, method=acc.settings.relevance or "no",
                    align_by=acc.settings.align_by, grid=grid.relative_to(out_dir), rows=table, verdict=" ".join(verdict),
                    shift=shift, phones=phones)
    return Section("Letter patterns", html, [grid])


def naps_section(acc: Accumulated, out_dir: Path, summary: dict, layers: list[str] | None = None,
                 metric: str = "cosine", min_count: int = 20) -> Section:
    out_dir = Path(out_dir)
    scores = summary["layers"]
    quality = quality_plot(scores, out_dir / "figures" / "nap_quality.png")
    heatmaps = []
    for layer in layers or list(acc.layout.layers):
        for kind in acc.settings.groups:
            idx = R.present(acc, kind, min_count)
            if len(idx) < 2:  # a heatmap and a tree need two groups with frames enough
                continue
            nap = R.contrastive(R.naps(acc, layer, kind)[idx])
            z, order = tree(nap, metric)
            names = [group_label(kind, acc.layout.groups(kind)[i]) for i in idx]
            title = f"{layer}: {kind} ({len(idx)} groups)"
            img = nap_heatmap(nap, names, z, order, out_dir / "figures" / f"nap_{layer}_{kind}.png", title)
            heatmaps.append((title, img.relative_to(out_dir)))
    keys = ["letters_eta2", "phonemes_eta2", "phonemes_silhouette", "phonemes_ari"]
    keys = [k for k in keys if any(k in r for r in scores.values())]
    table = [(layer, [row.get(k, np.nan) for k in keys]) for layer, row in scores.items()]
    f = summary["findings"]
    verdict = []
    if "best_layer_letters" in f:
        verdict.append(f"Letters separate best in {f['best_layer_letters']} (η² by depth: "
                       f"{', '.join(f'{v:.2f}' for v in f['letters_by_depth'])}).")
    if "best_layer_phonemes" in f:
        verdict.append(f"Phoneme NAPs group best by manner of articulation in {f['best_layer_phonemes']} "
                       f"(silhouette by depth: {', '.join(f'{v:.2f}' for v in f['phonemes_by_depth'])}).")
    html = fragment(NAPS, letters_from=acc.settings.letters_from, metric=metric, scores=summary["scores"],
                    quality=quality.relative_to(out_dir), keys=keys, table=table, verdict=" ".join(verdict),
                    heatmaps=heatmaps)
    return Section("Neuron activation profiles", html, [quality])
