"""Report section: every local-introspection method on a few emitted letters of the sample
utterance, and the all-frames view (relevance over time for every emitted letter)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from ...asr.decode import greedy_path
from ...attribution import attribute, method
from ...attribution.frames import FrameGeometry, attribute_frames
from ...audio import FeatureConfig
from ...corpus.load import utterance_features
from ...corpus.utterance import Utterance
from ...models.description import ModelDescription, default_cam_layer, describe
from ..figures import map_grid, relevance_over_time
from ..html import Section, fragment

TEMPLATE = """
<p>Maps explain one emitted letter at one output frame (columns) by each method (rows), cut to the
letter's receptive field ({{ rf }} input frames); red = evidence for the letter, blue = against,
each map scaled to its own maximum. z<sup>B</sup> bounds are the per-Mel-bin minimum and maximum of
the corpus' features. Grad-CAM uses <code>{{ cam_layer }}</code>.</p>
<figure><img src="{{ grid }}" alt="attribution maps per method and letter"></figure>
<p>All frames at once: <code>attribute_frames</code> explained all {{ n_frames }} output frames with
{{ method }} in {{ "%.2f"|format(seconds) }} s (exact: one backward pass restricted to each frame's receptive-field cone).
Each row is one emitted letter's relevance summed over Mel bins.</p>
<figure><img src="{{ overview }}" alt="relevance over time for every emitted letter"></figure>
<p>Completeness of the first letter's maps (<code>return_convergence_delta=True</code>): what the map
sums to, what the method should conserve, and the difference. LRP's difference is what the biases
and stabilizers absorb (<code>attribution.deltas.conservation</code> splits it per layer).</p>
<table><tr><th>method</th><th>Σ map</th><th>should conserve</th><th>delta</th></tr>
{% for d in deltas %}<tr><td>{{ d.name }}</td><td>{{ "%.4f"|format(d.total) }}</td><td>{{ d.what }} =
{{ "%.4f"|format(d.expected) }}</td><td>{{ "%.2e"|format(d.delta) }}</td></tr>
{% endfor %}</table>
"""

DELTAS = [
    ("integrated gradients (32 steps)", "integrated_gradients", {"steps": 32}, "f(x) − f(0)"),
    ("integrated gradients (128 steps)", "integrated_gradients", {"steps": 128}, "f(x) − f(0)"),
    ("LRP-ε", "lrp", {"composite": "epsilon"}, "f(x)"),
    ("LRP ε-γ-box", "lrp", {"composite": "epsilon-gamma-box"}, "f(x)"),
    ("deep Taylor (rules)", "deep_taylor", {}, "f(x)"),
]

METHODS = [
    ("gradient", "gradient", {}),
    ("gradient × input", "gradient_x_input", {}),
    ("integrated gradients", "integrated_gradients", {"steps": 32}),
    ("SmoothGrad", "smoothgrad", {"samples": 16, "stdev": 0.3}),
    ("guided backprop", "guided_backprop", {}),
    ("deconvnet", "deconvnet", {}),
    ("LRP-ε", "lrp", {"composite": "epsilon"}),
    ("LRP ε-γ-box", "lrp", {"composite": "epsilon-gamma-box"}),
    ("LRP α2β1", "lrp", {"composite": "alpha2-beta1"}),
    ("deep Taylor (rules)", "deep_taylor", {}),
    ("Grad-CAM", "grad_cam", {}),
    ("guided Grad-CAM", "guided_grad_cam", {}),
]


def corpus_bounds(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-Mel-bin minimum and maximum over a corpus' features, shaped ``(n_mels, 1)``."""
    lo = np.min([f.min(axis=1) for f in feats], axis=0)
    hi = np.max([f.max(axis=1) for f in feats], axis=0)
    return torch.from_numpy(lo)[:, None].double(), torch.from_numpy(hi)[:, None].double()


def attribution_section(desc: ModelDescription, cfg: FeatureConfig, sample: Utterance, bounds, out_dir: Path,
                        cam_layer: str | None = None, n_letters: int = 4) -> Section:
    out_dir = Path(out_dir)
    desc = desc if isinstance(desc, ModelDescription) else describe(desc, features=cfg)
    cam_layer = cam_layer or default_cam_layer(desc)
    net = copy.deepcopy(desc.module).double().eval()  # the caller's model stays as it is
    x = torch.from_numpy(utterance_features(sample, cfg)).double().unsqueeze(0)
    with torch.no_grad():
        s = net(x)[0]
    emitted = [e for e in greedy_path(s) if e.letter != " "]
    pick = [emitted[int(i)] for i in np.linspace(0, len(emitted) - 1, min(n_letters, len(emitted))).round()]
    g = desc.output_geometry
    low, high = bounds
    grid, extents = [], []
    for e in pick:
        a, b = g.window(e.start, x.shape[2])
        extents.append((a / cfg.frame_rate, b / cfg.frame_rate))
    for _, name, opts in METHODS:
        opts = method(name).with_context(opts, layer=cam_layer, low=low, high=high)
        row = []
        for e in pick:
            m = attribute(net, x, (e.symbol, e.start), name, **opts)[0].numpy()
            a, b = g.window(e.start, x.shape[2])
            row.append(m[:, a:b])
        grid.append(row)
    deltas = []
    for label, name, opts, what in DELTAS:
        opts = method(name).with_context(opts, low=low, high=high)
        m, delta = attribute(net, x, (pick[0].symbol, pick[0].start), name, return_convergence_delta=True, **opts)
        total = float(m.sum())
        deltas.append({"name": label, "total": total, "expected": total - float(delta[0]), "delta": float(delta[0]),
                       "what": what})
    grid_png = map_grid(grid, [n for n, _, _ in METHODS], [f"'{e.letter}' @ frame {e.start}" for e in pick],
                        out_dir / "assets" / f"{sample.id}_attribution_grid.png", extents)
    t0 = time.perf_counter()
    frames = [e.start for e in emitted]
    maps = attribute_frames(net, x, frames, s.argmax(0), "lrp", chunk=16, composite="epsilon",
                            geometry=FrameGeometry(g.rf, g.stride, g.offset))
    seconds = time.perf_counter() - t0
    rel = maps.abs().sum(1).numpy()
    overview = relevance_over_time(rel, [e.letter for e in emitted], x.shape[2] / cfg.frame_rate,
                                   out_dir / "assets" / f"{sample.id}_relevance_over_time.png",
                                   title="LRP-ε relevance of every emitted letter")
    html = fragment(TEMPLATE, rf=g.rf, cam_layer=cam_layer, grid=grid_png.relative_to(out_dir).as_posix(),
                    n_frames=len(frames), method="LRP-ε", seconds=seconds, deltas=deltas,
                    overview=overview.relative_to(out_dir).as_posix())
    return Section("Local introspection", html, [grid_png, overview])
