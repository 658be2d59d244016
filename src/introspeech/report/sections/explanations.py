"""Report section: which explanation to trust (the verdict table and the mean curves per method)."""

from __future__ import annotations

from pathlib import Path

from ...explanations.run import COLUMNS
from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>Every method explained the same {{ letters }} reference letters of {{ utterances }} utterances (placed by CTC
forced alignment, each at the frame of its span where its score is highest). <em>Faithfulness</em>: the
letter's probability as time–frequency patches of {{ patch[0] }} bands × {{ patch[1] }} frames are replaced
({{ baseline }}) in the order of the map's evidence (<em>deletion</em>: area under the curve, lower is more
faithful; <em>insertion</em>: patches put back into a replaced input, higher is better; <em>ROAD</em>:
deletion with removed values imputed from their neighbours plus noise, lower is better); a random order is
the chance level ({{ "%.3f"|format(chance.deletion_auc) }}). <em>Localization</em>: the share of
|relevance| inside the phones that spell the letter and inside its word (chance: a map spread evenly over
the receptive field, {{ "%.2f"|format(chance.phone_share) }} and {{ "%.2f"|format(chance.word_share) }});
<em>shift</em>: median time from the phones' centre to the frame of largest relevance. <em>Sanity</em>:
Spearman |map| after full cascading randomization (lower: the map depends on the parameters).
The best value of each column is in bold.</p>
<figure><img src="{{ figure }}" alt="mean deletion and insertion curves per method"></figure>
<table><tr><th>method</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for m, cells in rows %}<tr><td>{{ m }}</td>{% for text, bold in cells %}
<td>{% if bold %}<b>{{ text }}</b>{% else %}{{ text }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if digits %}<h3>The digits CNN</h3>
<p>The same methods on {{ digits.n }} correctly classified test digits (patches of 2 × 2 pixels, removed pixels
set to 0, the background; random order: {{ digits.chance }}); localization does not apply.</p>
<table><tr><th>method</th>{% for c in digits.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for m, cells in digits.rows %}<tr><td>{{ m }}</td>{% for text, bold in cells %}
<td>{% if bold %}<b>{{ text }}</b>{% else %}{{ text }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
<p>{{ verdict }}</p>
"""
DIGIT_COLUMNS = ("sanity_spearman_abs", "deletion_auc", "insertion_auc", "road", "seconds_per_example")

HEADERS = {"sanity_spearman_abs": "sanity", "deletion_auc": "deletion ↓", "insertion_auc": "insertion ↑",
           "road": "ROAD ↓", "phone_share": "phone share", "word_share": "word share", "shift_ms": "shift (ms)",
           "loo_agreement": "≈ leave-one-out ↑",
           "seconds_per_utterance": "s / utterance", "seconds_per_example": "s / example"}


def curves_figure(curves: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    colours = plt.get_cmap("tab20").colors
    for k, (name, c) in enumerate(curves.items()):
        axes[0].plot(c["fractions"], c["deletion"], lw=1, color=colours[k % 20], label=name)
        axes[1].plot(c["fractions"], c["insertion"], lw=1, color=colours[k % 20], label=name)
    first = next(iter(curves.values()), None)
    if first:
        axes[0].plot(first["fractions"], first["random"], "k--", lw=1.5, label="random order")
    for ax, t in zip(axes, ("deletion", "insertion")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("share of patches")
    axes[0].set_ylabel("letter probability")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save(fig, path)


def _cell(col: str, v: float | None) -> str:
    if v is None or v != v:
        return "—"
    return f"{v:.0f}" if col == "shift_ms" else (f"{v:.3f}" if not col.startswith("seconds") else f"{v:.3f}")


def findings(summary: dict) -> str:
    """What the table says, in sentences (measured, not tuned)."""
    rows, chance = summary["methods"], summary["chance"]
    if not rows:
        return ""
    rows = {m: r for m, r in rows.items() if r["deletion_auc"] is not None}
    if not rows or chance["deletion_auc"] is None:
        return ""
    beat = [m for m, r in rows.items() if r["deletion_auc"] < chance["deletion_auc"]]
    order = sorted(rows, key=lambda m: rows[m]["deletion_auc"])
    top = ", ".join(f"{m} {rows[m]['deletion_auc']:.3f}" for m in order[:3])
    out = [f"{len(beat)} of {len(rows)} methods beat the random order on deletion "
           f"({chance['deletion_auc']:.3f}); the most faithful: {top}."]
    phone = [r["phone_share"] for r in rows.values() if r["phone_share"] is not None]
    word = [r["word_share"] for r in rows.values() if r["word_share"] is not None]
    if phone and word:
        out.append(f"A letter's own phones hold {min(phone):.2f}–{max(phone):.2f} of its |relevance| (a map spread "
                   f"over the receptive field: {chance['phone_share']:.2f}); its word {min(word):.2f}–{max(word):.2f} "
                   f"({chance['word_share']:.2f}).")
    d = summary.get("digits", {})
    if d.get("methods") and d["chance"]["deletion_auc"] is not None:
        worse = [m for m, r in d["methods"].items() if r["deletion_auc"] >= d["chance"]["deletion_auc"]]
        out.append(f"On the digits CNN {len(d['methods']) - len(worse)} of {len(d['methods'])} methods beat the random "
                   f"order on deletion ({d['chance']['deletion_auc']:.3f}); most faithful: {d['best']['deletion_auc']}.")
    return " ".join(out)


def explanations_section(summary: dict, out_dir: Path) -> Section:
    out_dir = Path(out_dir)
    fig = curves_figure(summary["curves"], out_dir / "figures" / "explanation_curves.png")
    best = summary["best"]
    rows = [(m, [(_cell(c, r.get(c)), best.get(c) == m) for c in COLUMNS]) for m, r in summary["methods"].items()]
    s = summary["settings"]
    digits = None
    if summary.get("digits", {}).get("methods"):
        d = summary["digits"]
        first = next(iter(d["methods"].values()))
        digits = {"n": first["examples"], "chance": _cell("deletion_auc", d["chance"]["deletion_auc"]),
                  "columns": [HEADERS[c] for c in DIGIT_COLUMNS],
                  "rows": [(m, [(_cell(c, r.get(c)), d["best"].get(c) == m) for c in DIGIT_COLUMNS])
                           for m, r in d["methods"].items()]}
    html = fragment(TEMPLATE, letters=summary["letters"], utterances=summary["utterances"], patch=s["patch"],
                    baseline=s["baseline"], chance=summary["chance"], figure=fig.relative_to(out_dir),
                    columns=[HEADERS[c] for c in COLUMNS], rows=rows, verdict=findings(summary), digits=digits)
    return Section("Which explanation to trust", html, [fig])


