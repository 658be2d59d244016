"""Matplotlib figures for the report (Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..corpus.utterance import Segment  # noqa: E402


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def spectrogram_with_alignment(feats: np.ndarray, frame_rate: float, words: list[Segment] | None,
                               phones: list[Segment] | None, path: Path, title: str = "") -> Path:
    """Mel spectrogram ``(n_mels, frames)`` with word boundaries (white) and phone labels above."""
    n_frames = feats.shape[1]
    fig, ax = plt.subplots(figsize=(max(8, n_frames / 40), 3.6))
    ax.imshow(feats, origin="lower", aspect="auto", cmap="magma", extent=(0, n_frames / frame_rate, 0, feats.shape[0]))
    for p in phones or []:
        ax.axvline(p.start, color="#7fd3ff", lw=0.5, alpha=0.7)
        ax.text((p.start + p.end) / 2, feats.shape[0] * 1.01, p.label, ha="center", va="bottom", fontsize=6,
                rotation=90, clip_on=False)
    for w in words or []:
        ax.axvline(w.start, color="white", lw=1.4)
        ax.axvline(w.end, color="white", lw=1.4, ls="--")
        ax.text((w.start + w.end) / 2, 1, w.label, ha="center", va="bottom", color="white", fontsize=8, weight="bold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mel band")
    ax.set_title(title, pad=22, fontsize=9)
    return save(fig, path)


def posteriors(log_probs: np.ndarray, symbols: list[str], frame_seconds: float, path: Path, title: str = "",
               letters: list[tuple[float, str]] | None = None) -> Path:
    """Per-frame letter posteriors ``(n_symbols, frames)`` as an image over time."""
    probs = np.exp(log_probs)
    fig, ax = plt.subplots(figsize=(max(8, probs.shape[1] / 25), 4.2))
    ax.imshow(probs, origin="upper", aspect="auto", cmap="Greys", vmin=0, vmax=1,
              extent=(0, probs.shape[1] * frame_seconds, len(symbols) - 0.5, -0.5))
    ax.set_yticks(range(len(symbols)))
    ax.set_yticklabels([{" ": "␣", "<b>": "blank"}.get(s, s) for s in symbols], fontsize=6)
    for t, letter in letters or []:
        ax.text(t, -0.9, letter, ha="center", va="bottom", fontsize=7, color="tab:red", clip_on=False)
    ax.set_xlabel("time (s)")
    ax.set_title(title, pad=14, fontsize=9)
    return save(fig, path)


def map_grid(maps: list[list[np.ndarray]], row_names: list[str], col_names: list[str], path: Path,
             extent_s: list[tuple[float, float]] | None = None) -> Path:
    """Grid of signed maps ``(n_mels, frames)``: rows = methods, columns = explained letters.
    Each map has its own symmetric colour limits (a diverging colormap centred at zero)."""
    n_r, n_c = len(maps), len(maps[0])
    fig, axes = plt.subplots(n_r, n_c, figsize=(2.6 * n_c, 1.25 * n_r), squeeze=False)
    for i in range(n_r):
        for j in range(n_c):
            m = maps[i][j]
            lim = float(np.abs(m).max()) or 1.0
            ext = (*extent_s[j], 0, m.shape[0]) if extent_s else None
            axes[i][j].imshow(m, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if j == 0:
                axes[i][j].set_ylabel(row_names[i], rotation=0, ha="right", va="center", fontsize=8)
            if i == 0:
                axes[i][j].set_title(col_names[j], fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return save(fig, path)


def relevance_over_time(rel: np.ndarray, labels: list[str], seconds: float, path: Path, title: str = "") -> Path:
    """One row per emitted letter: summed |relevance| over Mel bins along the input time axis."""
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.16 * len(labels) + 1)))
    norm = rel / np.maximum(rel.max(axis=1, keepdims=True), 1e-12)
    ax.imshow(norm, aspect="auto", cmap="magma", extent=(0, seconds, len(labels) - 0.5, -0.5))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([{" ": "␣"}.get(c, c) for c in labels], fontsize=6)
    ax.set_xlabel("input time (s)")
    ax.set_ylabel("emitted letter (in order)")
    ax.set_title(title, fontsize=9)
    return save(fig, path)
