"""hama's phoneme recognizer (PyPI ``hama==1.3.10``, Apache-2.0) as a plain PyTorch module.

The wheel ships ``hama/assets/asr_waveform_fp16.onnx``: waveform → STFT written as two Conv1d
(n_fft 400, hop 160, reflect padding) → power → 80 Mel bands → log → Conv1d stem (80→256, k3,
stride 2, GELU) → 11 depthwise-separable blocks (k9, dilations 1 1 2 2 4 1 1 2 2 4 1, BatchNorm
folded, Swish, squeeze-excitation, residual) → 2 pre-norm self-attention layers (d 256, 4 heads,
GELU feed-forward) → 1×1 conv (the scores `HamaCTC` returns) → log-softmax over 191 tokens (IPA phonemes of English and Korean,
a word boundary ``<wb>``, the CTC blank last), one frame per 20 ms.

`HamaCTC` rebuilds that network from the graph's initializers (read with ``onnx.numpy_helper``,
converted to float32: PyTorch's CPU dilated depthwise convolutions are wrong in float16) and takes
``(batch, 1, samples)`` at 16 kHz, every row its full length (the ONNX graph's padding masks are
not needed). ``onnx2torch`` would convert the graph but imports torchvision, which does not import
beside the pinned torch; so the module is written here, from the graph's structure.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError

INSTALL = "pip install 'hama==1.3.10'"
VERSION = "1.3.10"
DILATIONS = (1, 1, 2, 2, 4, 1, 1, 2, 2, 4, 1)
MAX_FRAMES = 3000  # the graph keeps at most 30 s of 10 ms frames
BLANK_BIAS = -0.1  # added to the blank's log-probability before hama's greedy decoding


class FrontEnd(nn.Module):
    """Waveform → log-Mel ``(batch, 80, frames)`` as the graph computes it: reflect padding, the
    STFT's real and imaginary parts as two Conv1d (the window in their kernels), power, the Mel
    filterbank as a 1×1 Conv1d, log (``pad``: the reflect padding of each side). Layers, not
    code, so that tracing finds its geometry (a frame every 160 samples, 400 wide) and LRP its
    rules."""

    def __init__(self, real: torch.Tensor, imag: torch.Tensor, mel: torch.Tensor, pad: tuple[int, int] = (200, 200)):
        super().__init__()
        self.pad = pad
        self.real = nn.Conv1d(1, real.shape[0], real.shape[-1], stride=160, bias=False)
        self.imag = nn.Conv1d(1, imag.shape[0], imag.shape[-1], stride=160, bias=False)
        self.mel = nn.Conv1d(mel.shape[0], mel.shape[1], 1, bias=False)
        with torch.no_grad():
            self.real.weight.copy_(real)
            self.imag.weight.copy_(imag)
            self.mel.weight.copy_(mel.T[:, :, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x, self.pad, mode="reflect")
        re, im = self.real(padded), self.imag(padded)
        return torch.log(torch.clamp(self.mel(re * re + im * im), min=1e-10))


class GELU(nn.GELU):
    """GELU as the graph computes it: x·(1 + erf(x / 1.4140625)) / 2, √2 rounded to float16 (the
    network is sensitive enough that the exact √2 moves its log-probabilities by more than 0.02)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.erf(x / 1.4140625) + 1.0) * 0.5


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int = 256, hidden: int = 32):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Conv1d(channels, hidden, 1), nn.SiLU(), nn.Conv1d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(x.mean(-1, keepdim=True)))))


class Block(nn.Module):
    """Depthwise (BatchNorm folded) → pointwise → Swish → squeeze-excitation, plus the input."""

    def __init__(self, dilation: int, channels: int = 256, kernel: int = 9):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, groups=channels)
        self.pointwise = nn.Conv1d(channels, channels, 1)
        self.act = nn.SiLU()
        self.se = SqueezeExcite(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act(self.pointwise(self.depthwise(x)))) + x


class AttentionLayer(nn.Module):
    """Pre-norm self-attention and GELU feed-forward, each with a residual connection."""

    def __init__(self, d: int = 256, heads: int = 4, hidden: int = 512):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, hidden), GELU(), nn.Dropout(0.0), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class HamaCTC(nn.Module):
    """``(batch, 1, samples)`` at 16 kHz → scores ``(batch, 191, frames)`` (20 ms frames): the logits
    the graph's log-softmax reads (explanations start from scores, as for the built-in model; the
    greedy path and CTC alignments are the same on either)."""

    def __init__(self, front: FrontEnd):
        super().__init__()
        self.front = front
        self.stem = nn.Sequential(nn.Conv1d(80, 256, 3, stride=2, padding=1), GELU())
        self.backbone = nn.Sequential(*(Block(d) for d in DILATIONS))
        self.attn_layers = nn.ModuleList([AttentionLayer(), AttentionLayer()])
        self.proj = nn.Conv1d(256, 191, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"hama takes (batch, 1, samples) at 16 kHz, got {tuple(x.shape)}")
        mel = self.front(x[:, 0:1])
        if mel.shape[-1] > MAX_FRAMES:
            raise ValueError(f"hama reads at most 30 s ({MAX_FRAMES} frames) at once, got {mel.shape[-1]} frames; "
                             "cut the recording")
        h = self.backbone(self.stem(mel)).transpose(1, 2)
        for layer in self.attn_layers:
            h = layer(h)
        return self.proj(h.transpose(1, 2))


def asset(name: str) -> Path:
    """A file of the installed hama wheel; a one-line error when it is absent or of another version."""
    try:
        from importlib.metadata import version

        found = version("hama")
    except Exception:  # noqa: BLE001 - not installed
        raise InputError("hama", f"the hama wheel is not installed: {INSTALL}") from None
    if found != VERSION:
        raise InputError("hama", f"hama {found} is installed; introspeech reads the model of hama {VERSION} "
                                 f"(later versions replaced it): {INSTALL}")
    path = Path(str(resources.files("hama.assets").joinpath(name)))
    if not path.is_file():
        raise InputError(path, f"missing from the hama wheel: reinstall it ({INSTALL})")
    return path


def tokens() -> tuple[str, ...]:
    """The 191 output symbols: hama's decoder vocabulary, ``<wb>``, ``<blank>`` (last)."""
    path = asset("g2p_vocab.json")
    return tuple(json.loads(path.read_text(encoding="utf-8"))["decoder"]) + ("<wb>", "<blank>")


def _initializers(path: Path) -> tuple[dict, list]:
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # noqa: BLE001 - a damaged file
        raise InputError(path, f"not a readable ONNX model ({type(e).__name__}); reinstall hama ({INSTALL})") from None
    inits = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    return inits, list(graph.node)


def _node_params(nodes, inits: dict, name: str) -> list[np.ndarray]:
    """The initializers a node of the graph reads, by the node's name."""
    for n in nodes:
        if n.name == name:
            return [inits[i] for i in n.input if i in inits]
    raise KeyError(name)


def load_hama(path: Path | None = None) -> HamaCTC:
    """hama's recognizer in float32, in eval mode, weights read from the wheel's ONNX graph."""
    path = path or asset("asr_waveform_fp16.onnx")
    inits, nodes = _initializers(path)

    def p(name):
        return _node_params(nodes, inits, "/acoustic_model/" + name)

    try:
        front = FrontEnd(*(torch.from_numpy(inits[k]) for k in ("stft_real_kernel", "stft_imag_kernel", "mel_fb")))
        model = HamaCTC(front)
        sd = {}
        sd["stem.0.weight"], sd["stem.0.bias"] = p("stem/stem.0/Conv")
        for i in range(len(DILATIONS)):
            b = f"backbone/backbone.{i}"
            for part, node in (("depthwise", "depthwise/Conv"), ("pointwise", "pointwise/Conv"),
                               ("se.fc1", "se/fc1/Conv"), ("se.fc2", "se/fc2/Conv")):
                sd[f"backbone.{i}.{part}.weight"], sd[f"backbone.{i}.{part}.bias"] = p(f"{b}/{node}")
        for i in range(2):
            a = f"export_attn_layers.{i}"
            for norm in ("norm1", "norm2"):
                sd[f"attn_layers.{i}.{norm}.weight"], sd[f"attn_layers.{i}.{norm}.bias"] = \
                    p(f"{a}/{norm}/LayerNormalization")
            (w_in,), (b_in,) = p(f"{a}/MatMul"), p(f"{a}/Add")
            (w_out,), (b_out,) = p(f"{a}/MatMul_3"), p(f"{a}/Add_2")
            sd[f"attn_layers.{i}.attn.in_proj_weight"], sd[f"attn_layers.{i}.attn.in_proj_bias"] = w_in.T, b_in
            sd[f"attn_layers.{i}.attn.out_proj.weight"], sd[f"attn_layers.{i}.attn.out_proj.bias"] = w_out.T, b_out
            for k, node in ((0, "ff/ff.0"), (3, "ff/ff.3")):
                (w,), (bias,) = p(f"{a}/{node}/MatMul"), p(f"{a}/{node}/Add")
                sd[f"attn_layers.{i}.ff.{k}.weight"], sd[f"attn_layers.{i}.ff.{k}.bias"] = w.T, bias
        sd["proj.weight"], sd["proj.bias"] = p("proj/Conv")
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
        state.update({f"front.{k}": v for k, v in front.state_dict().items()})  # set by FrontEnd itself
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise InputError(path, f"not the graph of hama {VERSION} ({str(e).splitlines()[0][:120]}); "
                               f"reinstall it ({INSTALL})") from None
    return model.eval()
