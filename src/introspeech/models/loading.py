"""Loading a model for an analysis: the built-in recognizer, an introspeech checkpoint, or a user's
own model from a factory (``MODULE:FUNCTION``, importable from the working directory or
``PYTHONPATH``) with weights from a safetensors file (never a pickle).

Every failure is an `InputError` that names the argument or file at fault.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

from ..audio import PRESETS as FEATURE_PRESETS
from ..audio import FeatureConfig
from ..errors import InputError
from .description import ModelDescription, Output, describe
from .packaged import describe_packaged, is_packaged


def import_factory(spec: str):
    """The callable named by ``MODULE:FUNCTION``."""
    if spec.count(":") != 1:
        raise InputError("--model-factory", f"{spec!r} is not MODULE:FUNCTION (e.g. examples.quartznet:quartznet)")
    module_name, func = spec.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError("--model-factory", f"cannot import {module_name!r} ({e}); it must be importable from the "
                                            "working directory or PYTHONPATH") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise InputError("--model-factory", f"{module_name!r} has no function {func!r}")
    return fn


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state dict into ``model`` (names and shapes must match exactly)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(path, "weights must be a .safetensors file (pickles are refused: they can run code)")
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(path, f"not a readable safetensors file ({e})") from None
    mine = model.state_dict()
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or unexpected:
        raise InputError(path, f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    bad = [k for k in mine if tuple(mine[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise InputError(path, f"weights do not fit the model: {k} is {tuple(state[k].shape)} in the file, "
                               f"{tuple(mine[k].shape)} in the model")
    model.load_state_dict({k: v.to(mine[k].dtype) for k, v in state.items()})


def parse_alphabet(text: str | None) -> Output:
    """``--alphabet``: symbols as a JSON list or a plain string (one character each), the blank last
    unless given as ``"<b>"`` elsewhere. Default: the built-in 29 symbols."""
    if text is None:
        return Output()
    try:
        symbols = json.loads(text) if text.strip().startswith("[") else list(text)
    except json.JSONDecodeError as e:
        raise InputError("--alphabet", f"not a JSON list ({e.msg})") from None
    if not all(isinstance(s, str) and s for s in symbols) or len(set(symbols)) != len(symbols):
        raise InputError("--alphabet", "symbols must be distinct non-empty strings")
    if "<b>" not in symbols:
        symbols = symbols + ["<b>"]
    return Output("ctc", tuple(symbols), symbols.index("<b>"))


def parse_features(text: str | None) -> FeatureConfig:
    """``--features``: a preset name or a JSON FeatureConfig (default: the built-in model's)."""
    if text is None:
        return FEATURE_PRESETS["default"]
    if text in FEATURE_PRESETS:
        return FEATURE_PRESETS[text]
    try:
        return FeatureConfig.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise InputError("--features", f"neither a preset ({', '.join(FEATURE_PRESETS)}) nor a JSON FeatureConfig "
                                       f"({e})") from None


def load_description(model: str | Path | None = None, factory: str | None = None, weights: str | Path | None = None,
                     alphabet: str | None = None, features: str | None = None,
                     layers: list[str] | None = None, example: torch.Tensor | None = None,
                     output: Output | None = None) -> ModelDescription:
    """The model an analysis runs on, described: ``--model`` (an introspeech checkpoint, default the
    built-in model) or ``--model-factory`` with ``--weights``, ``--alphabet`` and ``--features``.
    ``example`` / ``output``: an input and the output type for models that are not speech recognizers."""
    from ..asr.checkpoint import load_model

    if factory is None:
        if weights is not None or alphabet is not None:
            raise InputError("--weights" if weights is not None else "--alphabet",
                             "only with --model-factory (a checkpoint carries its own)")
        if model is not None and is_packaged(model) and not Path(model).exists():
            desc = describe_packaged(str(model))
            if layers:
                desc = describe(desc.module, layers=layers, features=desc.features, name=desc.name,
                                output=desc.output, example=torch.zeros(1, desc.input_channels,
                                                                        int(2 * desc.features.frame_rate)))
            return desc
        net, cfg, meta = load_model(model)
        desc = describe(net, features=cfg, name=str(model or "built-in model"))
        if layers:
            desc = describe(net, layers=layers, features=cfg, name=desc.name, output=desc.output,
                            example=torch.zeros(1, cfg.n_mels, 200))
        return desc
    if model is not None:
        raise InputError("--model", "give either --model (a checkpoint) or --model-factory, not both")
    fn = import_factory(factory)
    try:
        net = fn()
    except Exception as e:  # noqa: BLE001 - the user's code: report it as their input
        raise InputError("--model-factory", f"{factory}() raised {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise InputError("--model-factory", f"{factory}() returned {type(net).__name__}, not an nn.Module")
    if weights is not None:
        load_weights(net, weights)
    net.eval()
    feats = parse_features(features)
    dtype = next(net.parameters()).dtype
    out = output or parse_alphabet(alphabet)
    example = torch.zeros(1, feats.n_mels, int(2 * feats.frame_rate), dtype=dtype) if example is None else example.to(dtype)
    desc = describe(net, example=example, layers=layers, output=out, features=feats, name=factory)
    desc.factory = factory
    return desc


__all__ = ["load_description", "import_factory", "load_weights", "parse_alphabet", "parse_features"]
