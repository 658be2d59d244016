"""Feature visualization of the speech recognizer end to end: data bounds and statistics from a
corpus, one optimized input per objective and parameterization, naturalness, images and WAV files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from ..audio import FeatureConfig, corpus_stats, load_audio, log_mel, mel_to_audio
from ..corpus.load import load_features
from ..corpus.utterance import Utterance
from ..models.description import ModelDescription, describe
from .objectives import parse
from .optimize import visualize
from .prior import WindowPrior, naturalness, sample_windows
from .regularize import Penalties, Robustness

DEFAULTS = {
    "direct": (Penalties(), Robustness()),  # the seed's weakly regularized baseline
    "fourier": (Penalties(tv_time=0.05, tv_freq=0.05, l2=0.01), Robustness(jitter=4, shift=1, stretch=0.1)),
    "prior": (Penalties(), Robustness(jitter=4, shift=1)),
}
"""Penalties and transformation robustness per parameterization (chosen on the built-in model: the
'fourier' setting removes the checkerboard noise of 'direct' without flattening the result)."""


class SpeechData:
    """Real windows, per-Mel bounds and log-Mel statistics of a corpus (for bounds, naturalness, audio)."""

    def __init__(self, cfg: FeatureConfig, utts: list[Utterance], window: int, n_windows: int = 512, seed: int = 0):
        self.feats = [f for _, f in load_features(utts, cfg, on_error=lambda u, e: None)]
        cat = np.concatenate(self.feats, axis=1)
        self.low = torch.tensor(np.percentile(cat, 0.5, axis=1), dtype=torch.float32)[:, None]
        self.high = torch.tensor(np.percentile(cat, 99.5, axis=1), dtype=torch.float32)[:, None]
        self.windows = sample_windows(self.feats, window, n_windows, seed)
        self.cfg = cfg
        if cfg.kind != "waveform":
            self.mean, self.std = log_mel_stats(cfg, utts)

    def audio(self, x: torch.Tensor) -> np.ndarray:
        """A z-normalized input ``(1, n_mels, frames)`` as a waveform (typical level, Griffin-Lim);
        a waveform model's input ``(1, 1, samples)`` is already one (clipped to ±1)."""
        if self.cfg.kind == "waveform":
            return np.clip(x[0, 0].detach().numpy().astype(np.float64), -1.0, 1.0)
        logmel = x[0].detach().numpy().astype(np.float64) * self.std + self.mean
        return mel_to_audio(logmel, self.cfg, n_iter=48)


def log_mel_stats(cfg: FeatureConfig, utts: list[Utterance], n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Per-Mel mean and std ``(n_mels, 1)`` of the un-normalized log-Mel of the first ``n`` utterances:
    the level at which z-normalized inputs are turned back into audio."""
    mean, std = corpus_stats([log_mel(load_audio(u.audio_path, cfg.sample_rate), cfg) for u in utts[:n]])
    return np.asarray(mean)[:, None], np.asarray(std)[:, None]


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_") or "objective"


def centre_frame(model: nn.Module, frames: int, n_mels: int) -> int:
    """The middle output frame of an input of ``frames`` frames (measured: any model)."""
    p = next(model.parameters())
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(model(torch.zeros(1, n_mels, frames, dtype=p.dtype, device=p.device)).shape[-1]) // 2
    finally:
        model.train(was)


def run_featvis(model: nn.Module | ModelDescription, data: SpeechData, objectives: list[str], out: str | Path,
                params: tuple[str, ...] = ("direct", "fourier", "prior"), prior: WindowPrior | None = None,
                steps: int = 256, seed: int = 0, write_audio: bool = True,
                progress: Callable[[str], None] | None = None) -> dict:
    """Optimize every objective under every parameterization; writes ``OUT/results.json``, and
    per result an ``.npy`` input and a ``.wav``. A letter without ``@frame`` means the centre frame."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    desc = model if isinstance(model, ModelDescription) else describe(model, features=data.cfg)
    model = desc.module
    frames = prior.cfg.window if prior is not None else desc.output_geometry.rf
    centre = centre_frame(model, frames, data.low.shape[0])
    results: dict = {"frames": frames, "objectives": {}}
    symbols = [None if i == desc.output.blank else c for i, c in enumerate(desc.output.alphabet)]  # blank: no name
    for spec in objectives:
        spec_c = re.sub(r"(letter:[^\s@]+)(?=\s|$)", lambda m: f"{m.group(1)}@{centre}", spec)
        obj = parse(spec_c, symbols)
        row = {}
        for param in params:
            if param == "prior" and prior is None:
                continue
            if progress:
                progress(f"{obj.name}: {param}")
            pen, rob = DEFAULTS[param]
            shape = (1, *prior.latent_shape) if param == "prior" else (1, data.low.shape[0], frames)
            v = visualize(model, obj, shape, data.low, data.high, param, steps, 0.05, pen, rob, seed=seed,
                          decoder=prior.decoder if param == "prior" else None)
            name = f"{_slug(spec)}_{param}"
            np.save(out / f"{name}.npy", v.input[0].numpy())
            if write_audio:
                sf.write(out / f"{name}.wav", data.audio(v.input), data.cfg.sample_rate)
            real = data.windows if v.input.shape[-1] == data.windows.shape[-1] else None
            row[param] = {"objective": v.objective, "file": name, **naturalness(v.input, prior, real)}
        results["objectives"][obj.name] = row
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def pattern_audio(patterns: dict[str, np.ndarray], cfg: FeatureConfig, utts: list[Utterance], out: str | Path,
                  n_stats: int = 40) -> list[Path]:
    """WAV files of average input patterns ``(n_mels, frames)`` (z-normalized), de-normalized with
    the log-Mel statistics of the first ``n_stats`` utterances and inverted with Griffin-Lim."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mean, std = log_mel_stats(cfg, utts, n_stats)
    files = []
    for name, pat in patterns.items():
        logmel = pat.astype(np.float64) * std + mean
        path = out / f"{_slug(name)}.wav"
        sf.write(path, mel_to_audio(logmel, cfg, n_iter=48), cfg.sample_rate)
        files.append(path)
    return files
