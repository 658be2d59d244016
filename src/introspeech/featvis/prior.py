"""A learned prior for feature visualization: a small convolutional autoencoder of real input windows
(z-normalized log-Mel, ``n_mels × window`` frames). Optimizing in its latent space keeps results near
the data; its reconstruction error of a result is a naturalness score (relative to real windows).
Saved as safetensors + JSON, never pickled."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import InputError

FORMAT = "introspeech-prior/1"


@dataclass(frozen=True)
class PriorConfig:
    n_mels: int = 40
    window: int = 64  # frames; a multiple of 4
    hidden: int = 64
    latent: int = 16  # channels of the latent, at window / 4 positions


class WindowPrior(nn.Module):
    """Conv1d encoder (two stride-2 layers) and a mirrored transposed-conv decoder."""

    def __init__(self, cfg: PriorConfig = PriorConfig()):
        super().__init__()
        if cfg.window % 4:
            raise ValueError(f"window must be a multiple of 4, got {cfg.window}")
        self.cfg = cfg
        self.encoder = nn.Sequential(nn.Conv1d(cfg.n_mels, cfg.hidden, 5, 2, 2), nn.ReLU(),
                                     nn.Conv1d(cfg.hidden, cfg.latent, 5, 2, 2))
        self.decoder = nn.Sequential(nn.ConvTranspose1d(cfg.latent, cfg.hidden, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose1d(cfg.hidden, cfg.n_mels, 4, 2, 1))

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.cfg.latent, self.cfg.window // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error per window."""
        with torch.no_grad():
            return ((self(x) - x) ** 2).flatten(1).mean(1)


def sample_windows(feats: list[np.ndarray], window: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random windows ``(n, n_mels, window)`` from utterances at least ``window`` frames long."""
    usable = [f for f in feats if f.shape[1] >= window]
    if not usable:
        raise ValueError(f"no utterance is {window} frames long")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = usable[rng.integers(len(usable))]
        t = rng.integers(f.shape[1] - window + 1)
        out.append(f[:, t:t + window])
    return torch.tensor(np.stack(out), dtype=torch.float32)


def train_prior(windows: torch.Tensor, cfg: PriorConfig, steps: int = 1500, batch: int = 64, seed: int = 0,
                progress: Callable[[int, float], None] | None = None) -> tuple[WindowPrior, dict]:
    """Fit the autoencoder to windows (90 % train, 10 % held out); returns it and its errors."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(windows), generator=g)
    n_val = max(1, len(windows) // 10)
    val, tr = windows[perm[:n_val]], windows[perm[n_val:]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prior = WindowPrior(cfg)
    opt = torch.optim.Adam(prior.parameters(), lr=2e-3)
    for step in range(steps):
        idx = torch.randint(len(tr), (batch,), generator=g)
        loss = ((prior(tr[idx]) - tr[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step, float(loss.detach()))
    prior.eval()
    info = {"train_windows": len(tr), "valid_windows": len(val), "steps": steps,
            "valid_error": float(prior.error(val).mean()), "valid_variance": float(val.var())}
    return prior, info


def _files(path: str | Path) -> tuple[Path, Path]:
    """``PATH.safetensors`` and ``PATH.json`` (suffixes appended, never replacing: ``model.prior``
    must not become ``model.safetensors``)."""
    base = str(path)
    for ext in (".safetensors", ".json"):
        base = base.removesuffix(ext)
    return Path(base + ".safetensors"), Path(base + ".json")


def save_prior(prior: WindowPrior, path: str | Path, meta: dict | None = None) -> Path:
    st, js = _files(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in prior.state_dict().items()}, str(st))
    js.write_text(json.dumps({"format": FORMAT, "config": asdict(prior.cfg), **(meta or {})},
                                                    indent=1))
    return st


def load_prior(path: str | Path) -> tuple[WindowPrior, dict]:
    st, js = _files(path)
    if not js.is_file():
        raise InputError(js, "no prior here (train one with `introspeech featvis train-prior`)")
    meta = json.loads(js.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(js, f"not an introspeech prior (format {meta.get('format')!r})")
    prior = WindowPrior(PriorConfig(**meta["config"]))
    prior.load_state_dict(load_file(str(st)))
    return prior.eval(), meta


def naturalness(x: torch.Tensor, prior: WindowPrior | None = None, real: torch.Tensor | None = None) -> dict[str, float]:
    """How data-like an input ``(1, n_mels, frames)`` is: the prior's reconstruction error relative
    to its error on real windows (≈ 1: as natural as data), and the distance to the nearest real
    window relative to the typical distance between real windows."""
    out: dict[str, float] = {}
    if prior is not None and x.shape[-1] == prior.cfg.window:
        err = float(prior.error(x).mean())
        ref = float(prior.error(real).mean()) if real is not None else float("nan")
        out["prior_error"], out["prior_error_ratio"] = err, err / ref if ref == ref and ref > 0 else float("nan")
    if real is not None and real.shape[1:] == x.shape[1:]:
        d = ((real - x) ** 2).flatten(1).mean(1)
        typical = float(((real[1:] - real[:-1]) ** 2).flatten(1).mean(1).median()) if len(real) > 1 else float("nan")
        out["nearest_real_distance"] = float(d.min())
        out["nearest_real_ratio"] = float(d.min()) / typical if typical > 0 else float("nan")
    return out
