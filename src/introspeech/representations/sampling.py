"""Sampled frames of every layer with their phone and letter labels (memory bounded by the sample).

One forward pass per utterance with the profiles' activation capture; a layer frame takes the
phone that contains the centre of its receptive field and the letter of the forced alignment
(`profiles.labels`, the same labelling as the NAPs). Up to ``per_utterance`` frames that have a
phone are drawn per utterance and layer (seeded), so every layer sees frames at the same times.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..explanations.run import phoneme_runs
from ..models.description import ModelDescription
from ..profiles.capture import Capture
from ..profiles.collect import letter_runs, run_labels
from ..profiles.labels import layer_frame, map_letters, map_phone_table, phone_table
from ..profiles.settings import Layout
from ..text import normalize_text


@dataclass
class Frames:
    """Per layer ``(n, channels)`` activations of the same n sampled times, their phone and letter
    group (-1: none; a phoneme recognizer's letters are its own tokens, forced-aligned from the
    corpus' phones; an encoder has none) and the utterance index of each."""

    layers: dict[str, np.ndarray]
    phones: np.ndarray
    letters: np.ndarray
    utterances: np.ndarray


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy with every layer re-initialized by its own initializer (seeded; BatchNorm: γ = 1,
    β = 0, running mean 0, variance 1): the random-network baseline of the probes."""
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in twin.modules():
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return twin.eval()


def sample_frames(desc: ModelDescription, utts: list[Utterance], per_utterance: int = 40, seed: int = 0,
                  module: nn.Module | None = None,
                  on_error: Callable[[Utterance, Exception], None] | None = None) -> Frames:
    """Sampled frames of ``desc``'s layers (of ``module`` instead, e.g. `randomized_copy`, with the
    same sample and labels)."""
    layout = Layout.of(desc)
    model = module if module is not None else desc.module
    cfg = desc.features
    rng = np.random.default_rng(seed)
    acts = {n: [] for n in layout.layers}
    phones, letters, owners = [], [], []
    ref = layout.geometry[0]  # times are drawn on the first layer's frames and mapped to every layer
    spells = desc.output.spells
    tokens = desc.output.kind == "ctc" and desc.output.spaced
    with Capture(model, layout) as cap:
        for k, u in enumerate(utts):
            try:
                if not u.phones:
                    raise InputError(u.audio_path or u.id, f"utterance {u.id} has no phone alignment")
                feats = utterance_features(u, cfg)
                x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
                with torch.no_grad():
                    layer_out, y = cap(x)
                    base = desc.module(x)[0] if module is not None else y[0]
                if spells:
                    sym, first, last = letter_runs(base.detach(), normalize_text(u.text).text, "reference", layout)
                elif tokens:  # a phoneme recognizer: its own tokens, forced-aligned from the corpus' phones
                    sym, first, last = phoneme_runs(desc, base.detach(), u)[:3]
            except (InputError, ValueError) as e:
                if on_error is None:
                    raise
                on_error(u, e if isinstance(e, InputError) else InputError(u.audio_path or u.id, str(e)))
                continue
            n0 = layer_out[layout.layers[0]].shape[-1]
            table = phone_table(u.phones)
            ph = map_phone_table(table, ref, n0, cfg.frame_rate)
            let = (map_letters(run_labels(layout.letter_groups(sym), first, last, base.shape[-1]), layout.output, ref, n0)
                   if spells or tokens else np.full(n0, -1, dtype=np.int64))  # no output units: an encoder
            where = np.flatnonzero(ph >= 0)
            pick = np.sort(rng.choice(where, size=min(per_utterance, where.size), replace=False))
            times = ref.centre(0) + ref.stride * pick
            for name, geo in zip(layout.layers, layout.geometry):
                a = layer_out[name][0].detach().numpy()
                t = np.clip(layer_frame(geo, times), 0, a.shape[-1] - 1)
                acts[name].append(a[:, t].T.astype(np.float32))
            phones.append(ph[pick])
            letters.append(let[pick])
            owners.append(np.full(pick.size, k))
    if not phones:
        raise InputError("corpus", "no utterance gave frames to sample (none had a readable phone alignment)")
    return Frames({n: np.concatenate(v) for n, v in acts.items()}, np.concatenate(phones), np.concatenate(letters),
                  np.concatenate(owners))
