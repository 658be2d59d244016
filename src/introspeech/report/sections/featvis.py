"""Report section of feature visualization: per letter, the unregularized, regularized and
prior-constrained optimal inputs beside the letter's aligned average real pattern, each audible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..figures import plt, save
from ..html import Section, fragment

TEMPLATE = """
<p>Inputs optimized to maximize a letter's score at the centre frame of a {{ frames }}-frame window
({{ steps }} Adam steps, seed 0): <em>direct</em> (no regularization: the seed's setting),
<em>fourier</em> (decorrelated Fourier parameterization, total variation, L2, time jitter, Mel shift,
time stretch) and <em>prior</em> (optimized in the latent space of an autoencoder of real windows).
Naturalness: the prior's reconstruction error relative to its error on real windows, and the distance
to the nearest real window relative to the typical distance between real windows (1 ≈ like data).
The last column is the letter's average real input window, aligned on the evidence for it
(global introspection). Audio: Griffin-Lim inversion at the corpus' average level.</p>
<figure><img src="{{ grid }}" alt="optimized inputs per letter and parameterization"></figure>
<table><tr><th>letter</th><th>parameterization</th><th>objective</th><th>prior error ratio</th>
<th>nearest-real ratio</th><th>listen</th></tr>
{% for r in rows %}<tr><td>{{ r.letter }}</td><td>{{ r.param }}</td><td>{{ "%.1f"|format(r.objective) }}</td>
<td>{{ "%.2f"|format(r.prior) }}</td><td>{{ "%.2f"|format(r.nearest) }}</td>
<td><audio controls preload="metadata" src="{{ r.audio }}"></audio></td></tr>{% endfor %}</table>
"""


def featvis_section(results: dict, folder: Path, out_dir: Path, patterns: dict[str, np.ndarray], audio_of,
                    sample_rate: int, steps: int) -> Section:
    """``results``: `run_featvis` output (files in ``folder``); ``patterns``: letter → aligned average
    window ``(n_mels, time)`` (may be empty); ``audio_of``: input ``(1, n_mels, T)`` → waveform."""
    import torch

    out_dir = Path(out_dir)
    letters = list(results["objectives"])
    params = list(next(iter(results["objectives"].values())))
    cols = params + (["real pattern"] if patterns else [])
    fig, axes = plt.subplots(len(letters), len(cols), figsize=(2.3 * len(cols) + 1, 1.7 * len(letters)), squeeze=False)
    rows = []
    for i, name in enumerate(letters):
        key = name.split("'")[1] if "'" in name else name
        for j, col in enumerate(cols):
            ax = axes[i][j]
            if col == "real pattern":
                img = patterns.get(key)
                if img is None:
                    ax.set_axis_off()
                    continue
            else:
                r = results["objectives"][name][col]
                img = np.load(folder / f"{r['file']}.npy")
                rows.append({"letter": key, "param": col, "objective": r["objective"],
                             "prior": r.get("prior_error_ratio", float("nan")),
                             "nearest": r.get("nearest_real_ratio", float("nan")),
                             "audio": (folder / f"{r['file']}.wav").relative_to(out_dir)})
            ax.imshow(img, origin="lower", aspect="auto", cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"letter {key}" if len(key) == 1 else key, rotation=0, ha="right", va="center", fontsize=9)
    for key, pat in patterns.items():
        if any(r["letter"] == key for r in rows):
            wav = folder / f"pattern_{key}.wav"
            sf.write(wav, audio_of(torch.as_tensor(pat, dtype=torch.float32)[None]), sample_rate)
            rows.append({"letter": key, "param": "real pattern", "objective": float("nan"), "prior": float("nan"),
                         "nearest": float("nan"), "audio": wav.relative_to(out_dir)})
    fig.subplots_adjust(wspace=0.05, hspace=0.1)
    grid = save(fig, out_dir / "figures" / "featvis.png")
    html = fragment(TEMPLATE, frames=results["frames"], steps=steps, grid=grid.relative_to(out_dir), rows=rows)
    return Section("Feature visualization", html, [grid])
