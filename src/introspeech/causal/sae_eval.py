"""How good are the SAEs, and are their features more selective than the neurons?

On held-out utterances, per layer: the fraction of variance unexplained (Σ‖x − x̂‖² / Σ‖x − x̄‖²),
the share of latents that never fire, the mean number that do per frame, and the error rate when
x̂ replaces the layer's output in the forward pass (`spliced`), beside the model's own: the CER
of a spelling model, the phone error rate (against the corpus' phones, `text.IPA_TO_ARPABET`) of
a phoneme recognizer.

Selectivity of a unit (a neuron, or an SAE feature) for a labelling (letters, phonemes): its mean
activation on the frames of its best group minus its mean on all other labelled frames, over its
standard deviation on all labelled frames (a d′); a unit passes at d′ ≥ 1. Purity: the share of
its (non-negative part of the) activation that falls on its best group's frames. Frames are
labelled as NAPs label them (`profiles.collect.utterance_kinds`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..asr.evaluate import error_rates
from ..attribution.hooks import preserved
from ..corpus.load import load_features
from ..corpus.utterance import Utterance
from ..models.description import ModelDescription
from ..profiles.capture import Capture
from ..profiles.collect import utterance_kinds
from ..profiles.settings import Layout, ProfileSettings
from ..text import normalize_text
from .sae import TopKSAE, frames_of, speech_frames
from .targets import check_measurable

THRESHOLD = 1.0  # d′ a selective unit reaches


@contextlib.contextmanager
def spliced(model: nn.Module, path: str, sae: TopKSAE, time_axis: int = -1,
            frames: int | None = None) -> Iterator[nn.Module]:
    """The model with the layer at ``path`` replaced by its SAE reconstruction (hook removed after);
    ``frames``: only the first ones (a model's own padding past them stays as it was)."""
    def fn(_m, _i, out):
        a = out if time_axis == 1 else out.transpose(1, 2)  # (batch, time, channels)
        n = a.shape[1] if frames is None else frames
        rec = sae(a[:, :n].reshape(-1, a.shape[-1]).float()).to(out.dtype).reshape(a.shape[0], n, a.shape[-1])
        rec = torch.cat([rec, a[:, n:]], dim=1)
        return rec if time_axis == 1 else rec.transpose(1, 2)
    handle = model.get_submodule(path).register_forward_hook(fn)
    try:
        yield model
    finally:
        handle.remove()


class _Units:
    """Per-group sums of one set of units' activations on labelled frames."""

    def __init__(self, n_groups: int, n_units: int):
        self.sum = np.zeros((n_groups, n_units))
        self.pos = np.zeros((n_groups, n_units))
        self.count = np.zeros(n_groups)
        self.sq = np.zeros(n_units)

    def add(self, a: np.ndarray, labels: np.ndarray) -> None:
        ok = labels >= 0
        a, lab = a[ok], labels[ok]
        np.add.at(self.sum, lab, a)
        np.add.at(self.pos, lab, np.maximum(a, 0))
        self.count += np.bincount(lab, minlength=len(self.count))
        self.sq += (a * a).sum(0)

    def dprimes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per unit: d′, its best group (an index of all groups), and the per-group means
        ``(groups, units)`` (NaN where a group has no frame)."""
        n = self.count.sum()
        seen = self.count > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            all_means = self.sum / self.count[:, None]
        if n == 0 or seen.sum() < 2:
            return np.full(self.sum.shape[1], np.nan), np.zeros(self.sum.shape[1], dtype=int), all_means
        means = self.sum[seen] / self.count[seen, None]
        best = means.argmax(0)
        total = self.sum.sum(0)
        rest = (total - means[best, np.arange(len(best))] * self.count[seen][best]) / np.maximum(n - self.count[seen][best], 1)
        mu = total / n
        sd = np.sqrt(np.maximum(self.sq / n - mu ** 2, 0))
        alive = sd > 1e-12
        d = np.where(alive, (means[best, np.arange(len(best))] - rest) / np.where(alive, sd, 1), np.nan)
        return d, np.flatnonzero(seen)[best], all_means

    def selectivity(self) -> dict:
        d, best, means = self.dprimes()
        if np.isnan(d).all():
            return {"units": self.sum.shape[1], "selective": 0, "share": float("nan"), "best_dprime": float("nan"),
                    "median_purity_top10": float("nan")}
        pos = self.pos.sum(0)
        purity = np.where(pos > 0, self.pos[best, np.arange(len(best))] / np.maximum(pos, 1e-300), np.nan)
        order = np.argsort(-np.nan_to_num(d, nan=-np.inf))[:10]
        return {"units": int(len(d)), "selective": int(np.nansum(d >= THRESHOLD)),
                "share": float(np.nansum(d >= THRESHOLD) / len(d)), "best_dprime": float(np.nanmax(d)),
                "median_purity_top10": float(np.nanmedian(purity[order]))}


def evaluate_saes(desc: ModelDescription, layout: Layout, utts: list[Utterance], saes: dict[str, TopKSAE],
                  on_error=None, details: dict | None = None, examples: int = 5) -> dict:
    """The measures of the module docstring for every SAE, on ``utts``. ``details`` (a dict) is
    filled per (layer, kind) with the arrays the figures read: d′ of neurons and of features, each
    feature's best group and NAP ``(groups, features)``; and per layer the ``examples`` frames
    that excite each feature most (``(features, examples)`` values, utterance indices, seconds)."""
    model, cfg = desc.module, desc.features
    transcribe = _transcriber(desc)
    names = list(saes)
    kinds = ("letters", "phonemes")
    s = ProfileSettings(groups=kinds if desc.output.spells else ("phonemes",))
    sq_err = dict.fromkeys(names, 0.0)
    moments = {n: [0.0, np.zeros(layout.channels[layout.layers.index(n)]), 0] for n in names}  # Σ‖x‖², Σx, frames
    fired = {n: torch.zeros(saes[n].w_dec.shape[0], dtype=torch.bool) for n in names}
    l0 = dict.fromkeys(names, 0.0)
    neurons = {(n, k): _Units(len(layout.groups(k)), layout.channels[layout.layers.index(n)]) for n in names for k in kinds}
    feats_u = {(n, k): _Units(len(layout.groups(k)), saes[n].w_dec.shape[0]) for n in names for k in kinds}
    refs, hyps, spliced_hyps = [], [], {n: [] for n in names}
    top = {n: (np.full((saes[n].w_dec.shape[0], examples), -np.inf), np.zeros((saes[n].w_dec.shape[0], examples), int),
               np.zeros((saes[n].w_dec.shape[0], examples))) for n in names}
    data = load_features(utts, cfg, on_error=on_error)
    read: list[Utterance] = []
    with preserved(model), torch.no_grad():
        for u, f in data:
            x = torch.as_tensor(f, dtype=next(model.parameters()).dtype).unsqueeze(0)
            with Capture(model, layout) as cap:
                acts, out = cap(x)
            scores = out[0]
            labelled = utterance_kinds(layout, s, u, scores, cfg.frame_rate, f.shape[1] / cfg.frame_rate)
            read.append(u)
            refs.append(_reference(desc, u))
            hyps.append(transcribe(x, scores))
            for n in names:
                i = layout.layers.index(n)
                speech = speech_frames(layout, n, x)
                a = frames_of(acts[n], speech).float()
                z = saes[n].encode(a)
                rec = saes[n].decode(z)
                sq_err[n] += float((a - rec).pow(2).sum())
                m = moments[n]
                m[0] += float(a.pow(2).sum())
                m[1] += a.sum(0).numpy()
                m[2] += len(a)
                fired[n] |= (z > 0).any(0)
                _keep_top(top[n], z.numpy(), len(read) - 1, layout.geometry[i], cfg.frame_rate)
                l0[n] += float((z > 0).sum())
                for k, lab in labelled.items():
                    labels = lab.label_at(layout.geometry[i], len(a))
                    neurons[(n, k)].add(a.numpy().astype(np.float64), labels)
                    feats_u[(n, k)].add(z.numpy().astype(np.float64), labels)
                with spliced(model, layout.paths[i], saes[n], layout.time_axes[i], speech):
                    spliced_hyps[n].append(transcribe(x, None))
    if details is not None:
        for n in names:
            details[n] = {"examples": top[n], "utterances": read}
            for k in kinds:
                if neurons[(n, k)].count.sum():
                    d_n, _, _ = neurons[(n, k)].dprimes()
                    d_f, best, nap = feats_u[(n, k)].dprimes()
                    details[(n, k)] = {"neurons": d_n, "features": d_f, "best": best, "nap": nap}
    metric = "per" if desc.output.spaced else "cer"
    out = {"utterances": len(refs), "metric": metric, "error_rate": _rate(metric, refs, hyps), "layers": {}}
    for n in names:
        total, mean_sum, frames = moments[n]
        var = total - float((mean_sum ** 2).sum()) / max(frames, 1)
        out["layers"][n] = {
            "width": int(saes[n].w_dec.shape[0]), "k": saes[n].k,
            "fvu": sq_err[n] / var if var > 0 else float("nan"),
            "dead_share": float((~fired[n]).float().mean()), "l0": l0[n] / max(frames, 1),
            "spliced_error_rate": _rate(metric, refs, spliced_hyps[n]),
            "selectivity": {k: {"neurons": neurons[(n, k)].selectivity(), "features": feats_u[(n, k)].selectivity()}
                            for k in kinds if neurons[(n, k)].count.sum()},
        }
    return out


def _reference(desc: ModelDescription, u: Utterance) -> str:
    if not desc.output.spaced:
        return normalize_text(u.text).text
    return " ".join(p.label for p in (u.phones or []) if p.label not in ("sil", "sp", "spn", ""))


def _transcriber(desc: ModelDescription) -> Callable[[torch.Tensor, torch.Tensor | None], str]:
    """The hypothesis of input ``x`` whose output ``scores`` are given (None: run the model, hooks
    acting): a CTC model's greedy symbols, Whisper's greedy text (normalized as a reference is);
    any other output is an `InputError` naming it."""
    if check_measurable(desc):  # Whisper's encoder: its decoder writes the text
        from ..corpus.realspeech import normalize_spoken
        from ..models.whisper_frontend import greedy_text

        text = greedy_text(desc.module)
        return lambda x, _scores: normalize_spoken(text(x)).text

    def ctc(x: torch.Tensor, scores: torch.Tensor | None) -> str:
        s = (desc.module(x)[0] if scores is None else scores).detach().numpy()
        return " ".join(desc.output.phones(s)) if desc.output.spaced else desc.output.decode(s)
    return ctc


def _rate(metric: str, refs: list[str], hyps: list[str]) -> float:
    if metric == "cer":
        return error_rates(refs, hyps)["cer"]
    import jiwer

    return float(jiwer.wer(refs, hyps)) if refs else float("nan")


def _keep_top(top: tuple[np.ndarray, np.ndarray, np.ndarray], z: np.ndarray, utt: int, geo, frame_rate: float) -> None:
    """Merge one utterance's strongest frame per feature into the running top ``examples`` (at most
    one example per utterance and feature)."""
    values, utts, seconds = top
    t = z.argmax(0)
    v = z[t, np.arange(z.shape[1])]
    at = np.array([geo.centre(int(f)) for f in range(z.shape[0])]) / frame_rate
    worst = values.argmin(1)
    better = v > values[np.arange(len(v)), worst]
    rows = np.flatnonzero(better)
    values[rows, worst[rows]] = v[rows]
    utts[rows, worst[rows]] = utt
    seconds[rows, worst[rows]] = at[t[rows]]
