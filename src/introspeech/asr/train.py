"""CTC training: AdamW with warm-up and cosine decay, clipping, length-sorted batches, SpecAugment,
validation CER each epoch, best-checkpoint keeping, and exact ``--resume``.

Exactness of resume: the batch order of epoch e comes from a generator seeded by (seed, e), the
SpecAugment masks of step s from one seeded by (seed, s); model, optimizer, step and the position
in the epoch are checkpointed every few minutes and at each epoch end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import PRESETS as FEATURE_PRESETS
from ..audio import FeatureConfig
from ..corpus.load import load_corpus, load_features
from ..text import BLANK, encode, normalize_text
from .checkpoint import read_meta, read_tensors, save_checkpoint
from .evaluate import error_rates, transcribe
from .model import FEATURE_PRESET, build_model, output_length


@dataclass
class TrainConfig:
    """Training settings (stored in every checkpoint)."""

    preset: str = "default"
    epochs: int = 30
    batch_frames: int = 16000  # padded input frames per batch
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    clip: float = 1.0
    specaugment: bool = True
    freq_masks: int = 2  # SpecAugment: Mel-band masks per utterance, each up to freq_width bands
    freq_width: int = 5
    seed: int = 0
    checkpoint_minutes: float = 5.0
    train_split: str = "train"
    valid_split: str = "valid"
    max_valid: int = 300
    vtlp: float = 0.0  # max vocal-tract-length warp (e.g. 0.12: factors in [0.88, 1.12]); 0 = off
    init: str = ""  # start from this checkpoint's weights (fine-tuning); "" = random init
    extra_train: list[str] = dataclasses.field(default_factory=list)  # more corpora whose train split is added
    factory: str = ""  # a user's model, MODULE:FUNCTION (instead of ``preset``); weights saved as OUT/model.safetensors


def make_batches(lengths: list[int], batch_frames: int, generator: torch.Generator) -> list[list[int]]:
    """Length-sorted batches whose padded size stays within ``batch_frames``, in shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, cur = [], []
    for i in order:
        if cur and lengths[i] * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[p] for p in perm]


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
                 freq_masks: int = 2, freq_width: int = 5, time_masks: int = 2, time_frac: float = 0.05) -> torch.Tensor:
    """Light SpecAugment: zero (= the normalized mean) a few Mel bands and time spans per utterance.

    Vectorized over the batch: the random numbers come from ``generator`` (CPU) and the masks are
    built on ``x``'s device, so a GPU batch costs no per-utterance Python."""
    b, n_mels, t = x.shape
    n = lengths.to(torch.float64)
    u = torch.rand(b, 2 * (freq_masks + time_masks), generator=generator, dtype=torch.float64)
    fw = (u[:, :freq_masks] * (freq_width + 1)).floor()
    f0 = (u[:, freq_masks:2 * freq_masks] * (n_mels - fw).clamp(min=1)).floor()
    tmax = (time_frac * n).floor().clamp(min=1)[:, None]
    tw = (u[:, 2 * freq_masks:2 * freq_masks + time_masks] * (tmax + 1)).floor()
    t0 = (u[:, 2 * freq_masks + time_masks:] * (n[:, None] - tw).clamp(min=1)).floor()
    dev = x.device
    f = torch.arange(n_mels, device=dev)[None, None, :]
    fmask = ((f >= f0.to(dev)[..., None]) & (f < (f0 + fw).to(dev)[..., None])).any(1)  # (b, n_mels)
    tt = torch.arange(t, device=dev)[None, None, :]
    tmask = ((tt >= t0.to(dev)[..., None]) & (tt < (t0 + tw).to(dev)[..., None])).any(1)  # (b, t)
    valid = torch.arange(t, device=dev)[None, :] < lengths.to(dev)[:, None]
    drop = (fmask[:, :, None] & valid[:, None, :]) | tmask[:, None, :]
    return x.masked_fill(drop, 0.0)


_F_SP, _MIN_LOG_HZ, _MIN_LOG_MEL, _LOGSTEP = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's Mel scale (librosa's default, ``htk=False``): linear below 1 kHz, logarithmic above."""
    hz = torch.as_tensor(hz, dtype=torch.float64)
    log_part = _MIN_LOG_MEL + torch.log(hz.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel.clamp(min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, mel * _F_SP)


def vtlp_warp(x: torch.Tensor, features: FeatureConfig, generator: torch.Generator | None, max_warp: float,
              alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Vocal tract length perturbation on Mel features: each utterance's frequency axis is scaled
    by a factor drawn from [1 - max_warp, 1 + max_warp] (Jaitly & Hinton 2013), by linear
    interpolation between Mel bands. It imitates speakers the synthesizers do not have.
    ``alpha`` gives the factors (one per utterance) instead of drawing them."""
    n = features.n_mels
    mel = torch.linspace(float(hz_to_mel(torch.tensor(features.fmin))), float(hz_to_mel(torch.tensor(features.fmax))),
                         n + 2, dtype=torch.float64)[1:-1]  # band centres on the Mel axis
    if alpha is None:
        alpha = 1 + (torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 2 - 1) * max_warp
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    src = hz_to_mel(mel_to_hz(mel)[None, :] / alpha[:, None])  # where each output band reads from
    hi = torch.searchsorted(mel, src.contiguous()).clamp(1, n - 1)
    pos = (hi - 1 + (src - mel[hi - 1]) / (mel[hi] - mel[hi - 1])).clamp(0, n - 1)  # fractional band index
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).to(x.dtype).to(x.device).unsqueeze(-1)
    take = lambda idx: torch.gather(x, 1, idx.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[2]))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _collate(items: list[tuple[np.ndarray, list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n_mels = items[0][0].shape[0]
    lengths = torch.tensor([f.shape[1] for f, _ in items])
    x = torch.zeros(len(items), n_mels, int(lengths.max()))
    for b, (f, _) in enumerate(items):
        x[b, :, : f.shape[1]] = torch.from_numpy(f)
    targets = torch.tensor([c for _, t in items for c in t], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for _, t in items])
    return x, lengths, targets, target_lengths


def _optimizer_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        st = opt.state.get(p, {})
        for k, v in st.items():
            out[f"optim.{name}.{k}"] = torch.as_tensor(v).clone()
    return out


def _load_optimizer(opt: torch.optim.Optimizer, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        st = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(f"optim.{name}.")}
        if st:
            opt.state[p] = {k: (v.clone() if k != "step" else v.clone().float()) for k, v in st.items()}


def prepare(corpus: str | Path, cfg: TrainConfig) -> tuple[list, list, dict]:
    """Training pairs (features, symbol indices), validation pairs (text, features) and a summary."""
    features = feature_config_for(cfg.preset)
    splits = load_corpus(corpus)
    pool = []  # the train split of the corpus and of every extra one
    for path, found in [(corpus, splits), *((e, load_corpus(e)) for e in cfg.extra_train)]:
        info = Path(path) / "corpus.json"
        if info.is_file() and json.loads(info.read_text()).get("test_only"):
            raise ValueError(f"corpus {path} is test-only (its corpus.json says so); it is never trained on")
        if cfg.train_split not in found:
            raise ValueError(f"corpus {path} has no {cfg.train_split!r} split (has {sorted(found)})")
        pool += found[cfg.train_split]
    skipped: list[str] = []
    train_utts = []
    for u in pool:
        if normalize_text(u.text).text:
            train_utts.append(u)
        else:
            skipped.append(f"{u.audio_path}: utterance {u.id} has an empty transcript")
    valid_utts = [u for u in splits.get(cfg.valid_split, [])[: cfg.max_valid] if normalize_text(u.text).text]
    data = [(f, encode(normalize_text(u.text).text))
            for u, f in load_features(train_utts, features, on_error=lambda u, e: skipped.append(str(e)))]
    valid = [(normalize_text(u.text).text, f) for u, f in load_features(valid_utts, features,
                                                                       on_error=lambda u, e: skipped.append(str(e)))]
    summary = {"path": str(corpus), "train_utterances": len(data), "valid_utterances": len(valid),
               "train_hours": round(sum(f.shape[1] for f, _ in data) / features.frame_rate / 3600, 3),
               "skipped": len(skipped), "skipped_first": skipped[:5]}
    return data, valid, summary


def train(corpus: str | Path, out: str | Path, cfg: TrainConfig = TrainConfig(), minutes: float | None = None,
          resume: bool = False, log: Callable[[dict], None] | None = None,
          progress: Callable[[dict], None] | None = None, device: str = "cpu") -> dict:
    """Train a recognizer on a corpus folder; returns the final state summary.

    Writes ``OUT/model.{safetensors,json}`` (best validation CER) and ``OUT/last.*`` (resume state).
    ``minutes`` caps the wall time of this call (the schedule still spans ``cfg.epochs``).
    """
    data, valid, summary = prepare(corpus, cfg)
    return train_arrays(data, valid, summary, out, cfg, minutes, resume, log, progress, device=device)


def train_arrays(data: list, valid: list, corpus_summary: dict, out: str | Path, cfg: TrainConfig,
                 minutes: float | None = None, resume: bool = False, log: Callable[[dict], None] | None = None,
                 progress: Callable[[dict], None] | None = None, device: str = "cpu",
                 max_steps: int | None = None) -> dict:
    """The training loop on prepared data (see `prepare`); ``device`` may be a GPU.

    ``max_steps`` stops this call after that many optimizer steps (a deterministic interruption)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    features = feature_config_for(cfg.preset) if not cfg.factory else FEATURE_PRESETS["default"]
    lengths = [f.shape[1] for f, _ in data]
    torch.manual_seed(cfg.seed)
    if cfg.factory:
        model, out_length = _factory_model(cfg, features, device)
    else:
        model = build_model(cfg.preset, seed=cfg.seed).to(device)
        out_length = lambda n: output_length(model.config, n)  # noqa: E731
    if cfg.factory:  # an unpadded model cannot take utterances shorter than its receptive field
        keep = [int(out_length(f.shape[1])) >= max(1, len(y)) for f, y in data]
        data = [d for d, k in zip(data, keep) if k]
        lengths = [f.shape[1] for f, _ in data]
        corpus_summary = {**corpus_summary, "too_short_for_the_model": len(keep) - sum(keep)}
        valid = [(r, f) for r, f in valid if int(out_length(f.shape[1])) >= 1]
    if cfg.init and cfg.factory:
        from ..models.loading import load_weights

        load_weights(model, cfg.init)
    elif cfg.init:
        from .checkpoint import load_model

        start, start_features, _ = load_model(cfg.init, preset=cfg.preset)
        features.check_compatible(start_features, what=f"--init checkpoint {cfg.init}")
        model.load_state_dict(start.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(make_batches(lengths, cfg.batch_frames, torch.Generator().manual_seed(0)))
    total_steps = steps_per_epoch * cfg.epochs
    state = {"step": 0, "epoch": 0, "batch": 0, "best_cer": None, "history": [], "train_seconds": 0.0,
             "audio_seconds": 0.0}
    if resume and (out / "last.json").is_file():
        meta = json.loads((out / "last.json").read_text()) if cfg.factory else read_meta(out / "last")
        if meta["train"] != dataclasses.asdict(cfg):
            raise ValueError(f"{out / 'last.json'}: training settings differ from the interrupted run; "
                             "resume with the same settings")
        if cfg.factory:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(out / "last.safetensors")))
            tensors = load_file(str(out / "last.state.safetensors"))
        else:
            tensors = read_tensors(out / "last")
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(opt, model, {k: v.to(device) for k, v in tensors.items()})
        state = meta["state"]

    def save(name: str, extra_tensors: bool) -> None:
        meta = {"train": dataclasses.asdict(cfg), "state": state, "corpus": corpus_summary}
        if cfg.factory:
            save_foreign(out / name, model, features, meta, _optimizer_tensors(opt, model) if extra_tensors else None)
        else:
            save_checkpoint(out / name, model, features, meta, _optimizer_tensors(opt, model) if extra_tensors else None)

    t_start = time.perf_counter()
    start_step = state["step"]
    last_ckpt = t_start
    hop_s = 1.0 / features.frame_rate
    stopped = False
    loss = torch.tensor(float("nan"))
    while state["epoch"] < cfg.epochs and not stopped:
        batches = make_batches(lengths, cfg.batch_frames, torch.Generator().manual_seed(cfg.seed * 1000 + state["epoch"]))
        model.train()
        while state["batch"] < len(batches):
            idx = batches[state["batch"]]
            x, xl, y, yl = _collate([data[i] for i in idx])
            x = x.to(device, non_blocking=True)
            if cfg.specaugment:
                x = spec_augment(x, xl, torch.Generator().manual_seed(cfg.seed * 1_000_003 + state["step"]),
                                 freq_masks=cfg.freq_masks, freq_width=cfg.freq_width)
            if cfg.vtlp:
                x = vtlp_warp(x, features, torch.Generator().manual_seed(cfg.seed * 7_919 + state["step"]), cfg.vtlp)
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], total_steps, cfg)
            t0 = time.perf_counter()
            logp = F.log_softmax(model(x), dim=1).permute(2, 0, 1)  # (frames, batch, symbols)
            loss = F.ctc_loss(logp, y.to(device), out_length(xl).to(device), yl.to(device),
                              blank=BLANK, zero_infinity=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            loss = loss.detach()
            if device != "cpu":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            state["step"] += 1
            state["batch"] += 1
            state["train_seconds"] += dt
            state["audio_seconds"] += float(xl.sum()) * hop_s
            if progress:
                progress({"epoch": state["epoch"], "batch": state["batch"], "batches": len(batches),
                          "loss": float(loss), "audio_per_s": float(xl.sum()) * hop_s / dt, "lr": opt.param_groups[0]["lr"]})
            now = time.perf_counter()
            if now - last_ckpt > cfg.checkpoint_minutes * 60:
                save("last", True)
                last_ckpt = now
            if (minutes is not None and now - t_start > minutes * 60) or (
                    max_steps is not None and state["step"] - start_step >= max_steps):
                stopped = True
                break
        if stopped:
            break
        state["epoch"] += 1
        state["batch"] = 0
        cer = error_rates([r for r, _ in valid], [transcribe(model, f) for _, f in valid])["cer"] if valid else None
        entry = {"epoch": state["epoch"], "step": state["step"], "loss": float(loss), "valid_cer": cer,
                 "audio_seconds": round(state["audio_seconds"]), "train_seconds": round(state["train_seconds"], 1)}
        state["history"].append(entry)
        if log:
            log(entry)
        if cer is not None and (state["best_cer"] is None or cer < state["best_cer"]):
            state["best_cer"] = cer
            save("model", False)
        save("last", True)
        last_ckpt = time.perf_counter()
    if stopped:
        save("last", True)
    if not valid and not stopped:
        save("model", False)
    (out / "history.json").write_text(json.dumps(state["history"], indent=1))
    return {"state": state, "corpus": corpus_summary, "stopped_early": stopped}


def _factory_model(cfg: TrainConfig, features: FeatureConfig, device: str):
    """A user's model from its factory, and its output lengths (measured, `graph.output_length_fn`)."""
    from ..graph import output_length_fn, trace
    from ..models.loading import import_factory

    model = import_factory(cfg.factory)()
    example = torch.zeros(1, features.n_mels, 200)
    geo = trace(model.eval(), example).frame_geometry()
    return model.to(device), output_length_fn(model, features.n_mels, geo.stride)


def save_foreign(path: Path, model: torch.nn.Module, features: FeatureConfig, meta: dict,
                 tensors: dict[str, torch.Tensor] | None) -> None:
    """A user's model: ``NAME.safetensors`` holds its own state dict (load it with --weights);
    the resume state (optimizer) goes to ``NAME.state.safetensors``; ``NAME.json`` the settings."""
    from safetensors.torch import save_file

    data = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(data, str(path.with_suffix(".safetensors.tmp")))
    path.with_suffix(".safetensors.tmp").replace(path.with_suffix(".safetensors"))
    if tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path.with_suffix(".state.tmp")))
        path.with_suffix(".state.tmp").replace(path.with_suffix(".state.safetensors"))
    info = {"format": "introspeech-foreign-model/1", "factory": meta["train"]["factory"], "features": features.to_dict(),
            **meta}
    path.with_suffix(".json.tmp").write_text(json.dumps(info, indent=1))
    path.with_suffix(".json.tmp").replace(path.with_suffix(".json"))


def feature_config_for(preset: str) -> FeatureConfig:
    """The feature settings a model preset is trained with."""
    return FEATURE_PRESETS[FEATURE_PRESET[preset]]
