"""Sparse autoencoders per layer (TopK, Gao et al. 2024), trained on activations streamed from a
corpus: a sparse feature basis for NAPs.

    z = ReLU(TopK(W_enc (x − b_pre) + b_enc))      k latents of ``width`` fire per frame
    x̂ = W_dec z + b_pre                             W_dec's columns have unit norm

Activations are scaled by one number per layer so that E‖x‖² equals the layer's width (the
scale is kept with the SAE). Latents that have not fired for ``dead_after`` frames are dead; an
auxiliary loss (weight 1/32) lets the top ``2k`` dead latents reconstruct the residual x − x̂, so
they come back. Training streams: one forward pass per utterance fills a shuffle buffer per layer,
and minibatches are drawn from the buffer (memory flat in the corpus' size). Deterministic for a
seed (the corpus order, the buffer and the initialization are seeded) and resumable: the state of
every layer is saved after each pass over the corpus.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..attribution.hooks import preserved
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance, fingerprint
from ..models.identity import weights_fingerprint
from ..profiles.capture import Capture
from ..profiles.settings import Layout


@dataclass(frozen=True)
class SAESettings:
    """Width as a multiple of the layer's channels, active latents per frame, training schedule."""

    expansion: int = 4
    k: int = 16
    epochs: int = 20  # passes over the corpus
    batch: int = 256
    buffer: int = 16384  # frames per layer held for shuffling
    lr: float = 2e-3
    dead_after: int = 20000  # frames without firing
    aux_weight: float = 1 / 32
    seed: int = 0


class TopKSAE(nn.Module):
    """One layer's autoencoder (see the module docstring); ``scale`` maps the layer's activations to
    the SAE's units (x_sae = x / scale)."""

    def __init__(self, channels: int, width: int, k: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(width, channels, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.w_dec = nn.Parameter(w.clone())  # (width, channels): rows are the decoder's unit-norm columns
        self.w_enc = nn.Parameter(w.clone())  # tied at initialization
        self.b_enc = nn.Parameter(torch.zeros(width))
        self.b_pre = nn.Parameter(torch.zeros(channels))
        self.register_buffer("scale", torch.ones(()))
        self.k = k

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x / self.scale - self.b_pre) @ self.w_enc.T + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes ``(frames, width)`` of activations ``(frames, channels)``."""
        pre = self.pre(x)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Activations ``(frames, channels)`` in the layer's own units."""
        return (z @ self.w_dec + self.b_pre) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.w_dec /= self.w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


class _Trainer:
    """One layer's SAE, optimizer, firing counters and shuffle buffer."""

    def __init__(self, channels: int, s: SAESettings, seed: int):
        self.sae = TopKSAE(channels, s.expansion * channels, s.k, seed)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=s.lr)
        self.since = torch.zeros(self.sae.w_dec.shape[0], dtype=torch.long)  # frames since each latent fired
        self.buf: list[torch.Tensor] = []
        self.held = 0
        self.s, self.rng = s, torch.Generator().manual_seed(seed + 1)
        self.steps, self.started = 0, False

    def start(self, x: torch.Tensor) -> None:
        """Scale and pre-bias from the first buffer (the mean, as the geometric median's stand-in)."""
        scale = (x.pow(2).sum(1).mean() / x.shape[1]).sqrt().clamp_min(1e-12)
        self.sae.scale.fill_(float(scale))
        with torch.no_grad():
            self.sae.b_pre.copy_(x.mean(0) / scale)
        self.started = True

    def add(self, frames: torch.Tensor) -> list[float]:
        self.buf.append(frames)
        self.held += len(frames)
        return self.train_full() if self.held >= self.s.buffer else []

    def train_full(self, final: bool = False) -> list[float]:
        if not self.buf:
            return []
        x = torch.cat(self.buf)
        self.buf, self.held = [], 0
        if not self.started:
            self.start(x)
        perm = torch.randperm(len(x), generator=self.rng)
        losses = []
        n = len(x) // self.s.batch * self.s.batch if not final else len(x)
        for a in range(0, n, self.s.batch):
            losses.append(self.step(x[perm[a:a + self.s.batch]]))
        if n < len(x):  # the rest waits for the next buffer
            self.buf, self.held = [x[perm[n:]]], len(x) - n
        return losses

    def step(self, x: torch.Tensor) -> float:
        sae = self.sae
        pre = sae.pre(x)
        top = pre.topk(sae.k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        target = x / sae.scale
        x_hat = z @ sae.w_dec + sae.b_pre
        err = target - x_hat
        loss = err.pow(2).sum(1).mean()
        fired = torch.zeros(pre.shape[1], dtype=torch.bool).scatter_(0, top.indices[top.values > 0].flatten(), True)
        self.since = torch.where(fired, torch.zeros_like(self.since), self.since + len(x))
        dead = self.since > self.s.dead_after
        if bool(dead.any()):
            k_aux = min(2 * sae.k, int(dead.sum()))
            masked = pre.masked_fill(~dead, float("-inf"))
            aux_top = masked.topk(k_aux, dim=-1)
            z_aux = torch.zeros_like(pre).scatter(-1, aux_top.indices, aux_top.values.relu())
            e_hat = z_aux @ sae.w_dec
            aux = (err.detach() - e_hat).pow(2).sum(1).mean() / err.detach().pow(2).sum(1).mean().clamp_min(1e-12)
            loss = loss + self.s.aux_weight * aux
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        sae.normalize_decoder()
        self.steps += 1
        return float(loss.detach())


def frames_of(acts: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """A captured ``(1, channels, time)`` output as frames ``(time, channels)`` (the first ``n``)."""
    a = acts[0].transpose(0, 1)
    return a[:n] if n is not None else a


def speech_frames(layout: Layout, name: str, x: torch.Tensor) -> int | None:
    """How many of layer ``name``'s frames hold the input ``x`` (a model that pads, Whisper to 30 s:
    its padding is in no SAE's training or measure); None: all of them (a local model adds none)."""
    return None if layout.local else layout.geometry[layout.layers.index(name)].frames_within(x.shape[-1])


def train_saes(model: nn.Module, layout: Layout, cfg, utts: list[Utterance], settings: SAESettings = SAESettings(),
               layers: list[str] | None = None, state_dir: str | Path | None = None, resume: bool = False,
               progress: Callable[[str], None] | None = None,
               on_error: Callable[[Utterance, Exception], None] | None = None) -> dict[str, TopKSAE]:
    """A TopK SAE per layer (default: every layer of ``layout``), trained on ``utts`` streamed
    ``settings.epochs`` times; ``state_dir``: saved after each pass, ``resume`` continues there."""
    names = layers or list(layout.layers)
    unknown = [n for n in names if n not in layout.layers]
    if unknown:
        raise ValueError(f"no layer {unknown[0]!r}; layers: {', '.join(layout.layers)}")
    trainers = {n: _Trainer(layout.channels[layout.layers.index(n)], settings, settings.seed + i)
                for i, n in enumerate(names)}
    first = 0
    state = Path(state_dir) if state_dir else None
    identity = {"model": weights_fingerprint(model), "corpus": fingerprint(utts)}
    if resume and state is not None and (state / "progress.json").is_file():
        first = _load_state(state, trainers, settings, identity)
    torch.manual_seed(settings.seed)
    with preserved(model), Capture(model, layout) as cap:
        for epoch in range(first, settings.epochs):
            order = np.random.default_rng(settings.seed + epoch).permutation(len(utts))
            for j in order:
                u = utts[int(j)]
                try:
                    feats = utterance_features(u, cfg)
                except Exception as e:  # noqa: BLE001 - an unreadable file is reported, training goes on
                    if on_error is None:
                        raise
                    on_error(u, e)
                    continue
                x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
                with torch.no_grad():
                    acts, _ = cap(x)
                for n in names:
                    trainers[n].add(frames_of(acts[n], speech_frames(layout, n, x)).float())
            for t in trainers.values():
                t.train_full(final=True)
            if progress:
                progress(f"SAE pass {epoch + 1}/{settings.epochs}")
            if state is not None:
                _save_state(state, trainers, settings, epoch + 1, identity)
    return {n: t.sae for n, t in trainers.items()}


def _save_state(folder: Path, trainers: dict[str, _Trainer], s: SAESettings, done: int, identity: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for n, t in trainers.items():
        tensors.update({f"{n}/{k}": v.contiguous() for k, v in t.sae.state_dict().items()})
        tensors[f"{n}/since"] = t.since
        for i, (k, v) in enumerate(_flat_opt(t.opt)):
            tensors[f"{n}/opt/{i}/{k}"] = v
    save_file(tensors, str(folder / "state.safetensors"))
    (folder / "progress.json").write_text(json.dumps({"epochs_done": done, "settings": asdict(s), **identity,
                                                       "steps": {n: t.steps for n, t in trainers.items()},
                                                       "rng": {n: t.rng.get_state().tolist() for n, t in trainers.items()},
                                                       "started": {n: t.started for n, t in trainers.items()}}))


def _flat_opt(opt: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
    out = []
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in st:
                    v = st[key]
                    out.append((key, v if isinstance(v, torch.Tensor) else torch.tensor(float(v))))
    return out


def _load_state(folder: Path, trainers: dict[str, _Trainer], s: SAESettings, identity: dict) -> int:
    meta = json.loads((folder / "progress.json").read_text())
    if meta["settings"] != asdict(s) or set(meta["steps"]) != set(trainers):
        raise ValueError(f"{folder}: a run with other settings or layers; start afresh (without --resume) or "
                         "delete the folder")
    for key, what in (("model", "the model's weights"), ("corpus", "the training utterances")):
        if meta.get(key) != identity[key]:
            raise ValueError(f"{folder}: {what} differ from the saved run's; start afresh (without --resume) or "
                             "delete the folder")
    tensors = load_file(str(folder / "state.safetensors"))
    for n, t in trainers.items():
        t.sae.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items()
                               if k.startswith(f"{n}/") and "/opt/" not in k and not k.endswith("/since")})
        t.since = tensors[f"{n}/since"]
        t.steps, t.started = meta["steps"][n], meta["started"][n]
        t.rng.set_state(torch.tensor(meta["rng"][n], dtype=torch.uint8))
        params = [p for g in t.opt.param_groups for p in g["params"]]
        for p in params:
            t.opt.state[p] = {}
        keys = sorted((k for k in tensors if k.startswith(f"{n}/opt/")), key=lambda k: int(k.split("/")[-2]))
        i = 0
        for p in params:  # Adam's three entries per parameter, in the order they were saved
            if i >= len(keys):
                break
            for key in ("exp_avg", "exp_avg_sq", "step"):
                t.opt.state[p][key] = tensors[f"{n}/opt/{i}/{key}"]
                i += 1
    return int(meta["epochs_done"])


def save_saes(folder: str | Path, saes: dict[str, TopKSAE], settings: SAESettings) -> Path:
    """Every layer's SAE in ``FOLDER/saes.safetensors`` (+ ``saes.json``: settings, widths, k)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"{n}/{k}": v.contiguous() for n, sae in saes.items() for k, v in sae.state_dict().items()},
              str(folder / "saes.safetensors"))
    meta = {"settings": asdict(settings), "layers": {n: {"channels": int(sae.w_dec.shape[1]),
                                                         "width": int(sae.w_dec.shape[0]), "k": sae.k}
                                                     for n, sae in saes.items()}}
    (folder / "saes.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_saes(folder: str | Path) -> dict[str, TopKSAE]:
    """The SAEs `save_saes` wrote."""
    folder = Path(folder)
    meta = json.loads((folder / "saes.json").read_text())
    tensors = load_file(str(folder / "saes.safetensors"))
    out = {}
    for n, m in meta["layers"].items():
        sae = TopKSAE(m["channels"], m["width"], m["k"])
        sae.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items() if k.rsplit("/", 1)[0] == n})
        out[n] = sae
    return out
