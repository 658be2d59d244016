"""Checkpoints: ``NAME.safetensors`` (tensors only) + ``NAME.json`` (configs, alphabet, metrics).

Loading never unpickles: safetensors holds raw tensors, JSON holds everything else. A file that
is not a safetensors file (e.g. a pickle) is refused before anything in it is interpreted.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..audio import FeatureConfig
from ..errors import InputError
from ..text import SYMBOLS
from .model import ModelConfig, Wav2Letter

FORMAT = "introspeech-checkpoint/1"


def builtin_model() -> Path:
    """Path (without suffix) of the default model shipped in the package."""
    return Path(str(resources.files("introspeech") / "data" / "model" / "default"))


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return Path(f"{p}.safetensors"), Path(f"{p}.json")  # a dot in the name is part of it ("run1.5")


def save_checkpoint(path: str | Path, model: Wav2Letter, features: FeatureConfig, extra: dict | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights (and optional extra tensors, e.g. optimizer state) and their JSON config."""
    st, js = _paths(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    data = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for k, v in (tensors or {}).items():
        data[k] = v.detach().contiguous().cpu()
    meta = {"format": FORMAT, "model": model.config.to_dict(), "features": features.to_dict(),
            "alphabet": list(SYMBOLS), **(extra or {})}
    tmp_st, tmp_js = st.with_suffix(".safetensors.tmp"), js.with_suffix(".json.tmp")
    save_file(data, str(tmp_st))
    tmp_js.write_text(json.dumps(meta, indent=1))
    tmp_st.replace(st)
    tmp_js.replace(js)
    return st


def read_meta(path: str | Path) -> dict:
    """The JSON half of a checkpoint (validated: format and alphabet)."""
    st, js = _paths(path)
    if not js.is_file() or not st.is_file():
        raise InputError(st, "checkpoint not found (needs NAME.safetensors and NAME.json)")
    try:
        meta = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise InputError(js, f"checkpoint config is not valid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT:
        raise InputError(js, f"not an introspeech checkpoint (format {meta.get('format')!r})")
    if meta.get("alphabet") != list(SYMBOLS):
        raise InputError(js, f"checkpoint alphabet {meta.get('alphabet')} differs from introspeech's "
                             f"{list(SYMBOLS)}")
    return meta


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint; refuses anything that is not a safetensors file."""
    st, _ = _paths(path)
    size = st.stat().st_size
    with st.open("rb") as f:
        head = f.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) < 9 or head[8:9] != b"{" or not 0 < n <= size - 8:
        kind = "a pickle" if head[:1] == b"\x80" else "a zip/torch.save" if head[:2] == b"PK" else "not a"
        raise InputError(st, f"{kind} file, not safetensors (8-byte header length + JSON); refusing to load it")
    try:
        return load_file(str(st))
    except Exception as e:  # safetensors raises its own error types
        raise InputError(st, f"not a readable safetensors file ({e})") from None


def load_model(path: str | Path | None = None, preset: str | None = None,
               device: str = "cpu") -> tuple[Wav2Letter, FeatureConfig, dict]:
    """Model (in eval mode), its feature config and the checkpoint metadata.

    ``path=None`` loads the built-in default model. With ``preset``, a checkpoint of another
    preset is refused.
    """
    path = builtin_model() if path is None else path
    meta = read_meta(path)
    config = ModelConfig.from_dict(meta["model"])
    if preset is not None and config.preset != preset:
        raise InputError(_paths(path)[1], f"checkpoint is preset {config.preset!r}, expected {preset!r}")
    model = Wav2Letter(config)
    tensors = read_tensors(path)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(_paths(path)[0], f"weights do not fit the {config.preset!r} architecture ({e})") from None
    model.to(device).eval()
    return model, FeatureConfig.from_dict(meta["features"]), meta
