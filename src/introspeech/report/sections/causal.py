"""Report section "Do the units matter?": mean ablations of the units NAPs (and latent relevance)
single out, against random units of the same layer, and attribution patching beside them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>Each layer's units are ranked for every letter and phoneme on {{ s.rank_split }} (by NAP contrast: the group's
mean activation minus the mean over all frames; and by latent relevance: gradient × activation of the group's
log-posteriors), then the top k are set to their corpus mean on {{ s.utterances }} utterances of
{{ s.measure_split }}. The effect is the drop of the group's log-posterior at its aligned frames (nats per entry,
averaged over {{ groups }}), with 95 % bootstrap intervals over utterances; grey: k random units of the same layer
({{ draws }} draws, 95 % band). p is the share of random draws whose effect reaches the ranked units'.</p>
<table><tr><th>labelling</th><th>ranking</th><th>cells beating random (p &lt; 0.05)</th></tr>
{% for r in rows %}<tr><td>{{ r.kind }}</td><td>{{ r.ranking }}</td><td>{{ r.beats }}</td></tr>{% endfor %}</table>
<p>Attribution patching (activation change × gradient, one backward pass per group and utterance) against the
exact ablations: Spearman {{ "%.2f"|format(s.attribution_patching.spearman) }} over
{{ s.attribution_patching.pairs }} (layer, ranking, k, group) cells.</p>
{% for f in figs %}<figure><img src="{{ f.src }}" alt="effect against k"><figcaption>{{ f.caption }}</figcaption>
</figure>{% endfor %}
"""


def effect_curves(summary: dict, kind: str, path: Path) -> Path:
    """Effect against k per layer: NAP- and relevance-ranked units with intervals, the random band."""
    res = summary["results"][kind]
    layers = list(res)
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.3 * rows + 0.6), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, layer in zip(axes.flat, layers):
        ks = [row["k"] for row in res[layer]["nap"]]
        band = np.array([row["random_band"] for row in res[layer]["nap"]])
        ax.fill_between(ks, band[:, 0], band[:, 1], color="0.8", label="random units")
        for ranking, colour in (("nap", "C3"), ("gradient", "C0")):
            rs = res[layer][ranking]
            ci = np.array([row["effect_ci"] for row in rs], dtype=float)
            ax.fill_between(ks, ci[:, 0], ci[:, 1], color=colour, alpha=0.2)
            ax.plot(ks, [row["effect"] for row in rs], "o-", color=colour, ms=3,
                    label="NAP contrast" if ranking == "nap" else "latent relevance")
        ax.set_xscale("log", base=2)
        ax.set_title(layer, fontsize=9)
        ax.axhline(0, color="k", lw=0.4)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("units ablated (k)", fontsize=9)
    fig.supylabel("drop of log-posterior (nats)", fontsize=9)
    fig.suptitle(f"{kind}: mean ablation of the top-k units", fontsize=10)
    return save(fig, path)


def causal_section(summary: dict, out_dir: Path, title: str = "Do the units matter?") -> Section:
    """The section from `causal.summary.summarize`'s output (with ``rank_split``/``measure_split``)."""
    out_dir = Path(out_dir)
    figs, files = [], []
    for kind in summary["results"]:
        p = effect_curves(summary, kind, out_dir / "figures" / f"ablation_{kind}.png")
        files.append(p)
        figs.append({"src": p.relative_to(out_dir).as_posix(),
                     "caption": f"{kind}: effect of ablating the top-k units against k, per layer"})
    rows = [{"kind": kind, "ranking": r, "beats": _beats(summary, kind, r)}
            for kind in summary["results"] for r in summary["rankings"]]
    groups = ", ".join(f"{n} {k}" for k, n in summary.get("groups_per_kind", {}).items())
    draws = summary.get("draws", "")
    return Section(title, fragment(TEMPLATE, s=summary, rows=rows, figs=figs, groups=groups, draws=draws), files)


def _beats(summary: dict, kind: str, ranking: str) -> str:
    cells = [row for per in summary["results"][kind].values() for row in per[ranking]]
    return f"{sum(row['p'] < 0.05 for row in cells)} of {len(cells)}"


def causal_demo(desc, acc, splits: dict, out_dir: Path, layers: int = 2, utterances: int = 4) -> Section:
    """The demo's small sweep: the ranking split's NAPs (``acc``), the last ``layers`` hidden layers,
    k = 1, 4, 16, 64, 39 random draws, measured on a few utterances of other speakers
    (`introspeech ablate` runs the whole sweep)."""
    from ...causal.ablation import AblationSettings, ablation_sweep
    from ...causal.summary import summarize

    rank_split = "test" if splits.get("test") else next(iter(splits))  # the split ``acc`` profiled
    measure_split = "heldout" if splits.get("heldout") else rank_split
    measure = splits[measure_split]
    measure = [measure[int(i)] for i in np.linspace(0, len(measure) - 1, min(utterances, len(measure)))]
    hidden = list(acc.layout.layers)[-1 - layers:-1]
    settings = AblationSettings(layers=tuple(hidden), ks=(1, 4, 16, 64), draws=39, min_count=5)
    sweep = ablation_sweep(desc, acc, splits[rank_split], measure, settings)
    summary = {**summarize(sweep), "rank_split": rank_split, "measure_split": measure_split, "draws": settings.draws}
    return causal_section(summary, out_dir)


SAE_TEMPLATE = """
<p>A TopK sparse autoencoder per layer ({{ s.settings.expansion }}× the layer's width, k = {{ s.settings.k }} active
latents per frame), trained on activations streamed from {{ s.train_split }}; measured on {{ s.utterances }}
utterances of {{ s.eval_split }}: the fraction of variance unexplained, the share of latents that never fire, and
the {{ s.metric|upper }} with the reconstruction spliced into the forward pass (the model's own:
{{ "%.1f"|format(100 * s.error_rate) }} %).
Selective units: d′ ≥ 1 between the best group's frames and all other labelled frames; purity: the share of a
unit's activation on its best group, median over the ten most selective units.</p>
<table><tr><th>layer</th><th>width</th><th>FVU</th><th>dead</th><th>spliced {{ s.metric|upper }}</th>
{% for k in kinds %}<th>{{ k }}: selective neurons / features</th><th>purity neurons / features</th>{% endfor %}</tr>
{% for name, r in s.layers.items() %}<tr><td>{{ name }}</td><td>{{ r.width }}</td><td>{{ "%.3f"|format(r.fvu) }}</td>
<td>{{ "%.1f"|format(100 * r.dead_share) }} %</td><td>{{ "%.1f"|format(100 * r.spliced_error_rate) }} %</td>
{% for k in kinds %}{% set q = r.selectivity.get(k) %}{% if q %}
<td>{{ "%.0f"|format(100 * q.neurons.share) }} % / {{ "%.0f"|format(100 * q.features.share) }} %</td>
<td>{{ "%.2f"|format(q.neurons.median_purity_top10) }} / {{ "%.2f"|format(q.features.median_purity_top10) }}</td>
{% else %}<td>—</td><td>—</td>{% endif %}{% endfor %}</tr>{% endfor %}</table>
{% for f in figs %}<figure><img src="{{ f.src }}" alt="{{ f.caption }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}{% if clips %}<p>The frames that excite the layer's most phoneme-selective features most
({{ clips|length }} features, their {{ n_examples }} strongest frames each, ±150 ms of audio around each):</p>
<table>{% for c in clips %}<tr><td>feature {{ c.feature }} ({{ c.group }}, d′ {{ "%.1f"|format(c.dprime) }})</td>
<td><audio controls src="{{ c.src }}"></audio></td></tr>{% endfor %}</table>{% endif %}
"""


def sae_section(summary: dict, title: str = "Sparse features of every layer", details: dict | None = None,
                out_dir: Path | None = None, cfg=None, top: int = 4) -> Section:
    """The table of `causal.sae_eval.evaluate_saes` (with ``settings``, ``train_split``, ``eval_split``);
    with its ``details`` and ``out_dir``: per layer the selectivity histograms of neurons and
    features, and for the last layer the NAPs and audio of its ``top`` most phoneme-selective features."""
    kinds = sorted({k for r in summary["layers"].values() for k in r["selectivity"]})
    figs, files, clips = [], [], []
    if details is not None and out_dir is not None:
        out_dir = Path(out_dir)
        for layer in summary["layers"]:
            p = selectivity_histograms(details, layer, kinds, out_dir / "figures" / f"sae_selectivity_{layer}.png")
            files.append(p)
            figs.append({"src": p.relative_to(out_dir).as_posix(),
                         "caption": f"{layer}: d′ of neurons and of SAE features for their best group"})
        layer = list(summary["layers"])[-1]
        kind = "phonemes" if (layer, "phonemes") in details else kinds[0] if kinds else None
        if kind is not None and (layer, kind) in details:
            p, clips = top_features(details, layer, kind, out_dir, cfg, top)
            files += [p, *[out_dir / c["src"] for c in clips]]
            figs.append({"src": p.relative_to(out_dir).as_posix(),
                         "caption": f"{layer}: NAPs ({kind}) of its {top} most selective features"})
    html = fragment(SAE_TEMPLATE, s=summary, kinds=kinds, figs=figs, clips=clips, n_examples=EXAMPLES)
    return Section(title, html, files)


EXAMPLES = 5


def selectivity_histograms(details: dict, layer: str, kinds: list[str], path: Path) -> Path:
    """Histograms of d′ (best group against the rest) of the layer's neurons and features, per labelling."""
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 2.6), squeeze=False, layout="constrained")
    for ax, kind in zip(axes[0], kinds):
        d = details.get((layer, kind))
        if d is None:
            ax.axis("off")
            continue
        both = np.concatenate([d["neurons"], d["features"]])
        bins = np.linspace(np.nanmin(both), np.nanmax(both), 40) if np.isfinite(both).any() else 10
        for key, colour in (("neurons", "C7"), ("features", "C2")):
            v = d[key][np.isfinite(d[key])]
            ax.hist(v, bins=bins, density=True, alpha=0.6, color=colour, label=f"{key} ({len(v)})")
        ax.axvline(1.0, color="k", lw=0.6, ls="--")
        ax.set_xlabel(f"d′ for the best {kind[:-1]}")
        ax.legend(fontsize=7)
    fig.suptitle(f"{layer}: selectivity of neurons and SAE features", fontsize=10)
    return save(fig, path)


def top_features(details: dict, layer: str, kind: str, out_dir: Path, cfg, top: int = 4) -> tuple[Path, list[dict]]:
    """Bar charts of the ``top`` most selective features' NAPs, and a WAV per feature of the frames
    that excite it most."""
    import soundfile as sf

    from ...audio import load_audio
    from ...profiles.labels import GROUPS

    d = details[(layer, kind)]
    order = np.argsort(-np.nan_to_num(d["features"], nan=-np.inf))[:top]
    names = GROUPS[kind]
    fig, axes = plt.subplots(len(order), 1, figsize=(9, 1.3 * len(order) + 0.5), squeeze=False, layout="constrained")
    clips = []
    values, utt_idx, seconds = details[layer]["examples"]
    utts = details[layer]["utterances"]
    for ax, f in zip(axes[:, 0], order):
        nap = d["nap"][:, f]
        ax.bar(range(len(nap)), np.nan_to_num(nap), color=["C3" if g == d["best"][f] else "C7" for g in range(len(nap))])
        ax.set_xticks(range(len(nap)))
        ax.set_xticklabels(names[:len(nap)], fontsize=6, rotation=90)
        ax.set_ylabel(f"#{f}", fontsize=8)
        if cfg is not None:
            pieces = []
            for j in np.argsort(-values[f]):
                if not np.isfinite(values[f, j]):
                    continue
                wave = load_audio(utts[int(utt_idx[f, j])].audio_path, cfg.sample_rate)
                c = int(seconds[f, j] * cfg.sample_rate)
                half = int(0.15 * cfg.sample_rate)
                pieces += [wave[max(0, c - half):c + half], np.zeros(int(0.1 * cfg.sample_rate), dtype=wave.dtype)]
            if pieces:
                path = out_dir / "assets" / f"sae_{layer}_feature{f}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), np.concatenate(pieces), cfg.sample_rate)
                clips.append({"feature": int(f), "group": names[int(d["best"][f])], "dprime": float(d["features"][f]),
                              "src": path.relative_to(out_dir).as_posix()})
    fig.suptitle(f"{layer}: mean code per {kind[:-1]} of its most selective features (red: the best)", fontsize=10)
    return save(fig, out_dir / "figures" / f"sae_top_features_{layer}.png"), clips


def sae_demo(desc, layout, splits: dict, out_dir: Path, epochs: int = 6) -> Section:
    """The demo's SAE: the last hidden layer, ``epochs`` passes over the test split, measured on 40
    utterances of the held-out voices (`introspeech sae` trains every layer with 20 passes)."""
    from ...causal.sae import SAESettings, train_saes
    from ...causal.sae_eval import evaluate_saes

    train_split = "test" if splits.get("test") else next(iter(splits))
    eval_split = "heldout" if splits.get("heldout") else train_split
    layer = layout.layers[-2]
    settings = SAESettings(epochs=epochs)
    saes = train_saes(desc.module, layout, desc.features, splits[train_split], settings, [layer])
    ev = splits[eval_split]
    ev = [ev[int(i)] for i in np.linspace(0, len(ev) - 1, min(40, len(ev)))]
    details: dict = {}
    summary = {**evaluate_saes(desc, layout, ev, saes, details=details),
               "settings": {"expansion": settings.expansion, "k": settings.k, "epochs": epochs},
               "train_split": train_split, "eval_split": eval_split}
    return sae_section(summary, details=details, out_dir=out_dir, cfg=desc.features)
