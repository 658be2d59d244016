"""The two models the sanity checks run on: the speech recognizer and a digits CNN, each with a
copy trained on permuted labels (data randomization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..asr.decode import greedy_path
from ..asr.model import geometry, output_length
from ..attribution.hooks import preserved
from ..audio import FeatureConfig
from ..corpus.load import load_features
from ..corpus.utterance import Utterance
from ..text import encode, normalize_text
from .check import Case
from .digits import accuracy, digits, permuted, train_digits


def _cropped_example(model: nn.Module, feats: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """The receptive field of the middle emitted letter (not a space) as input, and its target.

    A frame's score depends only on its receptive field, so attributing it on the cropped window
    is exact and several times cheaper than on the whole utterance."""
    x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
    with preserved(model), torch.no_grad():
        s = model(x)[0]
    em = [e for e in greedy_path(s) if e.letter != " "]
    if not em:
        return None
    e = em[len(em) // 2]
    geo = geometry(model.config)["output"]
    a, b = geo.window(e.start, x.shape[2])
    crop = x[:, :, a:b]
    t = int(round((geo.centre(e.start) - a - geo.centre(0)) / geo.stride))
    if not 0 <= t < output_length(model.config, b - a):
        return None
    with preserved(model), torch.no_grad():
        if not torch.allclose(model(crop)[0, e.symbol, t], s[e.symbol, e.start], atol=1e-4):
            return None  # the window was clipped in a way that changes the score: skip this example
    return crop, (e.symbol, t)


def speech_case(model: nn.Module, cfg: FeatureConfig, utts: list[Utterance], n_examples: int = 4,
                random_labels: nn.Module | None = None, cam_layer: str = "layer9") -> Case:
    """Examples: the middle letter of evenly spaced utterances, attributed on its receptive field."""
    pick = [utts[int(i)] for i in np.linspace(0, len(utts) - 1, min(len(utts), 3 * n_examples))]
    inputs, targets = [], []
    for _, f in load_features(pick, cfg, on_error=lambda u, e: None):
        ex = _cropped_example(model, f)
        if ex is not None:
            inputs.append(ex[0])
            targets.append(ex[1])
        if len(inputs) == n_examples:
            break
    if not inputs:
        raise ValueError("no utterance gave an emitted letter to explain")
    stacked = torch.cat([x[0] for x in inputs], dim=1)
    low, high = stacked.min(1).values[:, None], stacked.max(1).values[:, None]
    context = {"layer": cam_layer, "low": low, "high": high}
    return Case("speech", model, inputs, targets, lambda m: m[0].detach().double().numpy(), context,
                random_labels.eval() if random_labels is not None else None)


def image_case(n_examples: int = 8, seed: int = 0, epochs: int = 25) -> tuple[Case, dict]:
    """The digits CNN (trained here, seconds), its permuted-label twin, and their test accuracies."""
    xtr, ytr, xte, yte = digits(seed)
    model = train_digits(xtr, ytr, epochs, seed)
    shuffled = train_digits(xtr, permuted(ytr, seed), epochs, seed)
    info = {"test_accuracy": accuracy(model, xte, yte),
            "random_labels_train_accuracy": accuracy(shuffled, xtr, permuted(ytr, seed)),
            "random_labels_test_accuracy": accuracy(shuffled, xte, yte)}
    inputs = [xte[i:i + 1] for i in range(n_examples)]
    targets = [int(yte[i]) for i in range(n_examples)]
    context = {"layer": "5", "low": 0.0, "high": 1.0}
    return Case("image", model, inputs, targets, lambda m: m[0, 0].detach().double().numpy(), context, shuffled), info


def random_label_speech_model(model: nn.Module, cfg: FeatureConfig, utts: list[Utterance], out: str | Path,
                              steps: int = 60, seed: int = 0) -> nn.Module:
    """The recognizer's architecture trained for ``steps`` CTC steps on transcripts shuffled across
    utterances (data randomization); cached in ``out`` (a finished run is loaded, not retrained)."""
    from ..asr.checkpoint import load_model, read_meta
    from ..asr.train import TrainConfig, train_arrays

    out = Path(out)
    tcfg = TrainConfig(preset=model.config.preset, epochs=1000, batch_frames=4000, lr=2e-3, warmup_steps=10,
                       specaugment=False, seed=seed)
    last = out / "last.json"
    if last.is_file() and read_meta(out / "last")["state"]["step"] >= steps:
        return load_model(out / "last")[0]
    texts = [normalize_text(u.text).text for u in utts]
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    shuffled = {u.id: texts[order[k]] for k, u in enumerate(utts)}
    pairs = [(f, encode(shuffled[u.id])) for u, f in load_features(utts, cfg, on_error=lambda u, e: None)
             if shuffled[u.id]]
    summary = {"note": "transcripts permuted across utterances (data randomization)", "utterances": len(pairs)}
    train_arrays(pairs, [], summary, out, tcfg, max_steps=steps, resume=last.is_file())
    return load_model(out / "last")[0]
