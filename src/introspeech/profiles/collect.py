"""One utterance's contribution to the accumulators (see accumulate.py for the array names)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..asr.decode import forced_align, greedy_path
from ..asr.model import Geometry
from ..corpus.utterance import Utterance
from ..text import normalize_text
from .accumulate import Capture, Layout, ProfileSettings, capture
from .alignment import align_emissions
from .kernels import add_rows, add_windows
from .labels import (
    Occurrence,
    layer_frame,
    letter_frames,
    letter_occurrences,
    map_letters,
    map_phones,
    phone_occurrences,
)


def _occ_arrays(occ: list[Occurrence]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([o.group for o in occ], dtype=np.int64),
            np.array([o.centre for o in occ], dtype=np.float64))


def _add_rows(acc: dict, layer: str, labels: dict[str, np.ndarray], block: np.ndarray, c0: int) -> None:
    """Time-independent NAP sums of one layer for the labellings present (one pass over the block)."""
    args = []
    for kind in ("letters", "phonemes"):
        key = f"nap/{layer}/{kind}"
        if kind in labels:
            args += [acc[f"{key}/sum"], acc[f"{key}/sumsq"], acc[f"{key}/count"], labels[kind]]
        else:  # a labelling that marks nothing
            c = next(acc[f"nap/{layer}/{k}/sum"] for k in labels).shape[1]
            args += [np.zeros((1, c)), np.zeros(c), np.zeros(1), np.full(block.shape[0], -1, dtype=np.int64)]
    add_rows(*args, block, c0)


def _windows(acc: dict, key: str, a: np.ndarray, groups: np.ndarray, centres: np.ndarray, half: int,
             c0: int = 0) -> None:
    if groups.size:
        add_windows(acc[f"{key}/sum"], acc[f"{key}/count"], a, c0, groups, centres, half)


def letter_spans(scores: torch.Tensor, text: str, source: str) -> list:
    """Letter spans on output frames: forced alignment of ``text`` or the greedy CTC path."""
    if source == "prediction":
        return greedy_path(scores)
    return forced_align(torch.log_softmax(scores.double(), dim=0), text)


def _blocks(layout: Layout, acts: dict) -> list[tuple[Geometry, np.ndarray, list[tuple[str, int]]]]:
    """Layers whose frames sit at the same places share their labels; each such block is
    transposed once to ``(time, channels)`` (what the kernels read); each layer starts at an offset."""
    groups: dict = {}
    for name, geo in zip(layout.layers, layout.geometry):
        n = acts[name].shape[2]
        groups.setdefault((geo.centre(0), geo.stride, n), (geo, []))[1].append(name)
    out = []
    for geo, names in groups.values():
        offsets = np.cumsum([0] + [acts[n].shape[1] for n in names])
        block_t = torch.empty(acts[names[0]].shape[2], int(offsets[-1]), dtype=acts[names[0]].dtype)
        for n, a, b in zip(names, offsets[:-1], offsets[1:]):
            block_t[:, a:b].copy_(acts[n][0].detach().T)
        block = block_t.numpy()
        out.append((geo, block, list(zip(names, offsets[:-1].tolist()))))
    return out


def accumulate_utterance(acc: dict, model: nn.Module, layout: Layout, s: ProfileSettings, utt: Utterance,
                         feats: np.ndarray, frame_rate: float, hooks: Capture | None = None) -> None:
    """Add one utterance (normalized features ``(n_mels, time)``) to the accumulators ``acc``;
    ``hooks``: a `Capture` already registered on ``model`` (else one is made for this call)."""
    x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
    if hooks is None:
        acts, out = capture(model, layout.layers, x, keep_graph=s.gradient_adjusted)
    else:
        acts, out = hooks(x, keep_graph=s.gradient_adjusted)
    scores = out[0].detach()
    occurrences: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    label_fns = {}
    if "letters" in s.groups:
        spans = letter_spans(scores, normalize_text(utt.text).text, s.letters_from)
        out_lab = letter_frames(spans, scores.shape[1])
        label_fns["letters"] = lambda g, n: map_letters(out_lab, layout.output, g, n)
        occurrences["letters"] = _occ_arrays(letter_occurrences(spans, layout.output))
    if "phonemes" in s.groups and utt.phones:
        label_fns["phonemes"] = lambda g, n: map_phones(utt.phones, g, n, frame_rate)
        occurrences["phonemes"] = _occ_arrays(phone_occurrences(utt.phones, frame_rate))
    for geo, block, layers in _blocks(layout, acts):
        labels = {kind: fn(geo, block.shape[0]) for kind, fn in label_fns.items()}
        for name, c0 in layers:
            _add_rows(acc, name, labels, block, c0)
        for kind in labels:
            groups, centres = occurrences[kind]
            frames = layer_frame(geo, centres)
            for name, c0 in layers:
                if s.nap_window:
                    _windows(acc, f"wnap/{name}/{kind}", block, groups, frames, s.nap_window, c0)
    for kind, (groups, _) in occurrences.items():
        acc["totals"][2 if kind == "letters" else 3] += len(groups)
    if "phonemes" in occurrences:
        groups, centres = occurrences["phonemes"]
        _windows(acc, "pattern/phonemes/aligned", np.ascontiguousarray(feats.T, dtype=np.float32), groups,
                 np.rint(centres).astype(np.int64), s.pattern_window)
    if "letters" in occurrences:
        if s.gradient_adjusted and len(occurrences["letters"][0]):
            _adjusted(acc, layout, s, acts, out, *occurrences["letters"])
        _letter_patterns(acc, model, layout, s, x, scores, feats)
    acc["totals"][0] += 1
    acc["totals"][1] += feats.shape[1]


def _letter_patterns(acc, model, layout: Layout, s: ProfileSettings, x, scores, feats) -> None:
    """Input windows around each emitted letter: at the nominal position of its output frame, and
    at the position its relevance points to."""
    em = align_emissions(model, x, scores, layout.output, s.relevance, s.align_by)
    if not len(em):
        return
    groups, nominal, aligned = em.symbol, em.nominal, em.aligned
    rows = np.ascontiguousarray(feats.T, dtype=np.float32)
    _windows(acc, "pattern/letters/nominal", rows, groups, nominal, s.pattern_window)
    if s.relevance:
        _windows(acc, "pattern/letters/aligned", rows, groups, aligned, s.pattern_window)
        half = layout.shift_bins()
        shift = np.clip(aligned - nominal, -half, half) + half
        acc["shift/hist"] += np.bincount(shift, minlength=2 * half + 1)


def _adjusted(acc, layout: Layout, s: ProfileSettings, acts, out, groups: np.ndarray, centres: np.ndarray) -> None:
    """Gradient-adjusted windowed NAPs: each letter occurrence's window is centred, per layer, on the
    frame where the mean |∂score/∂activation| over channels is largest."""
    t_out = layer_frame(layout.output, centres).clip(0, out.shape[2] - 1)
    seeds = torch.zeros((len(groups),) + tuple(out.shape), dtype=out.dtype)
    seeds[torch.arange(len(groups)), 0, torch.as_tensor(groups), torch.as_tensor(t_out)] = 1.0
    tensors = [acts[name] for name in layout.layers]
    grads = torch.autograd.grad(out, tensors, grad_outputs=seeds, is_grads_batched=True, retain_graph=False)
    for name, g in zip(layout.layers, grads):
        centre = g[:, 0].abs().mean(1).argmax(-1).numpy()  # (n_occ,)
        _windows(acc, f"anap/{name}/letters", acts[name][0].detach().T.contiguous().numpy(), groups, centre,
                 s.nap_window)
