"""The two models the sanity checks run on: the speech recognizer and a digits CNN, each with a
copy trained on permuted labels (data randomization)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..asr.decode import Emission, greedy_runs
from ..attribution.hooks import preserved
from ..audio import FeatureConfig
from ..corpus.load import load_features
from ..corpus.utterance import Utterance, fingerprint
from ..errors import InputError
from ..models.description import ModelDescription, default_cam_layer, describe
from ..text import encode, normalize_text
from .check import Case
from .digits import DigitsCNN, accuracy, digits, permuted, train_digits


def _cropped_example(desc: ModelDescription, feats: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """The receptive field of the middle emitted letter (not a space) as input, and its target.

    A frame's score depends only on its receptive field, so attributing it on the cropped window
    is exact and several times cheaper than on the whole utterance; a model without locality is
    explained on the whole utterance."""
    model = desc.module
    x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
    with preserved(model), torch.no_grad():
        s = model(x)[0]
    out = desc.output
    quiet = {i for i, c in enumerate(out.alphabet) if c in (" ", "|", "▁") or c == out.boundary}
    em = [Emission(int(k), int(a), int(b)) for k, a, b in zip(*greedy_runs(out.greedy(s.numpy()), out.blank))
          if int(k) not in quiet]
    if not em:
        return None
    e = em[len(em) // 2]
    if not desc.layers[-1].local:  # every frame sees the whole input: explained on the whole utterance
        return x, (e.symbol, e.start)
    geo = desc.output_geometry
    a, b = geo.window(e.start, x.shape[2])
    a = a // geo.stride * geo.stride  # a crop at a multiple of the stride keeps the frames where they were
    crop = x[:, :, a:b]
    t = e.start - a // geo.stride
    with preserved(model), torch.no_grad():
        try:
            scores = model(crop)[0]
        except RuntimeError:  # an unpadded model on a window clipped at the utterance's edge
            return None
        if not 0 <= t < scores.shape[-1] or not torch.allclose(scores[e.symbol, t], s[e.symbol, e.start], atol=1e-4):
            return None  # the window was clipped in a way that changes the score: skip this example
    return crop, (e.symbol, t)


def speech_case(model: nn.Module | ModelDescription, cfg: FeatureConfig, utts: list[Utterance], n_examples: int = 4,
                random_labels: nn.Module | None = None, cam_layer: str | None = None, on_error=None) -> Case:
    """Examples: the middle letter of evenly spaced utterances, attributed on its receptive field;
    ``on_error(utterance, error)`` hears of unreadable ones (None: raise)."""
    desc = model if isinstance(model, ModelDescription) else describe(model, features=cfg)
    from ..models.whisper_frontend import WhisperEncoder

    if isinstance(desc.module, WhisperEncoder):  # explained on its decoder's tokens
        from .tokens import whisper_case

        pick = [utts[int(i)] for i in np.linspace(0, len(utts) - 1, min(len(utts), n_examples))]
        return whisper_case(desc, pick, on_error)
    if desc.output.kind != "ctc":
        raise InputError("--model", f"{desc.name}'s output is {desc.output.kind!r}, not per-frame symbols: the "
                         "speech sanity checks explain a CTC output's emitted symbols")
    model = desc.module
    cam_layer = cam_layer or default_cam_layer(desc)
    pick = [utts[int(i)] for i in np.linspace(0, len(utts) - 1, min(len(utts), 3 * n_examples))]
    inputs, targets = [], []
    for _, f in load_features(pick, cfg, on_error=on_error):
        ex = _cropped_example(desc, f)
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
    return Case("speech", model, inputs, targets, _waveform_2d if cfg.kind == "waveform" else _features_2d, context,
                random_labels.eval() if random_labels is not None else None)


def _features_2d(m: torch.Tensor) -> np.ndarray:
    return m[0].detach().double().numpy()


def _waveform_2d(m: torch.Tensor, hop: int = 160) -> np.ndarray:
    """A map over samples ``(1, 1, samples)`` as an image: one column per 10 ms (what the image
    similarities of the sanity checks compare)."""
    w = m[0, 0].detach().double().numpy()
    n = w.size // hop * hop
    return w[:n].reshape(-1, hop).T


def image_case(n_examples: int = 8, seed: int = 0, epochs: int = 25,
               model: ModelDescription | None = None) -> tuple[Case, dict]:
    """The digits CNN (trained here, seconds), its permuted-label twin, and their test accuracies.

    ``model``: a user's image classifier of the digits instead (from --model-factory, already
    trained); its twin is its architecture, from the same factory, trained on permuted labels."""
    from ..models.loading import import_factory

    xtr, ytr, xte, yte = digits(seed)
    make = import_factory(model.factory) if model is not None and model.factory else DigitsCNN
    if model is not None and not model.factory:
        raise ValueError(f"{model.name}: data randomization retrains the architecture; give --model-factory")
    layer = "5" if model is None else model.layers[-2].path  # the last block before the head
    dtype = torch.float32 if model is None else next(model.module.parameters()).dtype
    xtr, xte = xtr.to(dtype), xte.to(dtype)
    model = train_digits(xtr, ytr, epochs, seed) if model is None else model.module.eval()
    shuffled = train_digits(xtr, permuted(ytr, seed), epochs, seed, make=make).to(dtype)
    info = {"test_accuracy": accuracy(model, xte, yte),
            "random_labels_train_accuracy": accuracy(shuffled, xtr, permuted(ytr, seed)),
            "random_labels_test_accuracy": accuracy(shuffled, xte, yte)}
    inputs = [xte[i:i + 1] for i in range(n_examples)]
    targets = [int(yte[i]) for i in range(n_examples)]
    context = {"layer": layer, "low": 0.0, "high": 1.0}
    return Case("image", model, inputs, targets, lambda m: m[0, 0].detach().double().numpy(), context, shuffled), info


def random_label_speech_model(model: nn.Module | ModelDescription, cfg: FeatureConfig, utts: list[Utterance], out: str | Path,
                              steps: int = 60, seed: int = 0, on_error=None) -> nn.Module:
    """The recognizer's architecture trained for ``steps`` CTC steps on transcripts shuffled across
    utterances (data randomization); cached in ``out`` (a finished run is loaded, not retrained)."""
    from ..asr.checkpoint import load_model
    from ..asr.train import TrainConfig, train_arrays

    out = Path(out)
    desc = model if isinstance(model, ModelDescription) else describe(model, features=cfg)
    if desc.factory is None and desc.config is None:
        raise InputError(desc.name, "data randomization retrains the architecture, which needs the built-in model or "
                                    "--model-factory; skip it with --random-label-steps 0")
    tcfg = TrainConfig(preset=desc.config["preset"] if desc.config else "default", epochs=1000, batch_frames=4000,
                       lr=2e-3, warmup_steps=10, specaugment=False, seed=seed, factory=desc.factory or "")

    def trained():
        if desc.factory:
            from ..models.loading import load_description

            return load_description(factory=desc.factory, weights=out / "last.safetensors").module
        return load_model(out / "last")[0]

    # the cache is used only for the same utterances and settings (made_from.json, written when
    # training ends); anything else is trained afresh over it
    last, made = out / "last.json", out / "made_from.json"
    identity = {"corpus": fingerprint(utts), "seed": seed, "preset": tcfg.preset, "factory": tcfg.factory}
    same = made.is_file() and json.loads(made.read_text()) == identity and last.is_file()
    if same and json.loads(last.read_text())["state"]["step"] >= steps:
        return trained()
    made.unlink(missing_ok=True)  # until training ends, the weights here are not what it vouches for
    texts = [normalize_text(u.text).text for u in utts]
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    shuffled = {u.id: texts[order[k]] for k, u in enumerate(utts)}
    pairs = [(f, encode(shuffled[u.id])) for u, f in load_features(utts, cfg, on_error=on_error)
             if shuffled[u.id]]
    summary = {"note": "transcripts permuted across utterances (data randomization)", "utterances": len(pairs)}
    train_arrays(pairs, [], summary, out, tcfg, max_steps=steps, resume=same)
    made.write_text(json.dumps(identity))
    return trained()
