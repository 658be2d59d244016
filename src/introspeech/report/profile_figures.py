"""Figures of global introspection: pattern grids, NAP heatmaps with dendrograms, quality per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import dendrogram

from .figures import plt, save


def pattern_grid(rows: list[tuple[str, np.ndarray]], names: list[str], path: Path, frame_ms: float) -> Path:
    """Rows of patterns ``(group, n_mels, time)`` (e.g. raw, normalized; aligned, nominal); columns = groups.

    Raw rows share one colour scale (magma); normalized rows are diverging with symmetric limits per row."""
    n_r, n_c = len(rows), len(names)
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.15 * n_c + 1.2, 1.3 * n_r), squeeze=False)
    for i, (label, pats) in enumerate(rows):
        signed = "raw" not in label
        lim = float(np.nanmax(np.abs(pats))) or 1.0
        half = (pats.shape[2] - 1) / 2 * frame_ms / 1000
        for j in range(n_c):
            ax = axes[i][j]
            kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if signed else dict(cmap="magma")
            ax.imshow(pats[j], origin="lower", aspect="auto", extent=(-half, half, 0, pats.shape[1]), **kw)
            ax.axvline(0, color="k", lw=0.4, alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(names[j], fontsize=10)
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"window ±{half:.2f} s, Mel bands upwards", fontsize=8, y=1.0)
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    return save(fig, path)


def nap_heatmap(nap: np.ndarray, names: list[str], z: np.ndarray, order: np.ndarray, path: Path, title: str) -> Path:
    """Dendrogram of the groups above a heatmap of their contrastive NAPs ``(group, channel)``.

    Columns follow the tree's leaf order; channels are sorted by the group they respond to most."""
    ordered = nap[order]
    top = ordered.argmax(0)
    ch = np.lexsort((-ordered.max(0), top))
    lim = float(np.nanmax(np.abs(ordered))) or 1.0
    fig, (ax_d, ax_h) = plt.subplots(2, 1, figsize=(max(6, 0.22 * len(names) + 1.5), 6.2),
                                     gridspec_kw={"height_ratios": [1, 3.4]})
    if len(z):
        dendrogram(z, ax=ax_d, no_labels=True, color_threshold=0, above_threshold_color="0.3", link_color_func=None)
    ax_d.set_axis_off()
    ax_d.set_title(title, fontsize=9)
    im = ax_h.imshow(ordered[:, ch].T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax_h.set_xticks(range(len(order)))
    ax_h.set_xticklabels([names[i] for i in order], fontsize=7, rotation=90)
    ax_h.set_ylabel("channel (sorted by preferred group)")
    ax_h.set_yticks([])
    fig.colorbar(im, ax=ax_h, fraction=0.03, pad=0.01, label="contrastive mean activation")
    fig.subplots_adjust(hspace=0.02)
    return save(fig, path)


def quality_plot(scores: dict[str, dict], path: Path) -> Path:
    """Per layer: letter separation (η²), phoneme separation (η²) and phoneme-category cluster quality."""
    layers = list(scores)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers)), 3.4))
    series = [("letters_eta2", "letters: η² (variance explained by the letter)", "tab:red"),
              ("classes_eta2", "classes: η² (variance of the per-example channel means explained by the class)",
               "tab:purple"),
              ("phonemes_eta2", "phonemes: η²", "tab:blue"),
              ("phonemes_silhouette", "phoneme NAPs: silhouette of manner categories", "tab:green"),
              ("phonemes_ari", "phoneme NAPs: ARI of tree cut vs categories", "tab:olive")]
    for key, label, colour in series:
        vals = [scores[k].get(key, np.nan) for k in layers]
        if not np.all(np.isnan(vals)):
            ax.plot(x, vals, "o-", label=label, color=colour)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, fontsize=8)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper left")
    return save(fig, path)


def shift_histogram(hist: np.ndarray, frame_ms: float, path: Path) -> Path:
    """Aligned − nominal input position of the emitted letters (ms)."""
    half = (hist.size - 1) // 2
    ms = np.arange(-half, half + 1) * frame_ms
    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.bar(ms, hist, width=frame_ms, color="tab:gray")
    ax.set_xlabel("evidence position − receptive-field centre (ms)")
    ax.set_ylabel("letters")
    nz = np.flatnonzero(hist)
    if nz.size:
        ax.set_xlim(ms[nz[0]] - 5 * frame_ms, ms[nz[-1]] + 5 * frame_ms)
    return save(fig, path)
