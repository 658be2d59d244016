"""The description of a model that every analysis accepts, in introspeech's terms.

A `ModelDescription` holds the `nn.Module`, the layers to profile (module paths, channels and
frame geometry), the output type (CTC over an alphabet with its blank, per-frame classes, or
per-example classes), and the input front end (a `FeatureConfig`). The built-in Wav2Letter
describes itself from its config; any other model is described by tracing one forward pass
(`introspeech.graph.trace`): its layers default to every block output, its geometry is inferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..audio import PRESETS as FEATURE_PRESETS
from ..audio import FeatureConfig
from ..errors import InputError
from ..graph import FrameGeometry, trace
from ..text import BLANK, SYMBOLS, ipa_to_arpabet

OUTPUT_KINDS = ("ctc", "frames", "classes", "encoder")
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Hardtanh, nn.ReLU6)


@dataclass(frozen=True)
class Output:
    """What the scores mean: ``ctc`` (per frame, over ``alphabet`` with a ``blank``), ``frames``
    (per-frame classes), ``classes`` (one score vector per example) or ``encoder`` (no scores: a
    representation per frame, e.g. a sequence-to-sequence model's encoder, whose layers are
    profiled against the corpus' alignments; analyses that explain scores refuse it).

    A phoneme recognizer's symbols are whole tokens (``spaced``: a transcript is the tokens
    separated by spaces, ``boundary`` the token that separates words, shown as ``|``); it cannot
    spell a letter transcript. ``blank_bias`` is added to the blank's score before greedy decoding
    (as the recognizer's own runtime does)."""

    kind: str = "ctc"
    alphabet: tuple[str, ...] = SYMBOLS
    blank: int | None = BLANK
    spaced: bool = False
    boundary: str | None = None
    blank_bias: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, not {self.kind!r}")
        if self.kind == "ctc" and (self.blank is None or not 0 <= self.blank < len(self.alphabet)):
            raise ValueError(f"a CTC output needs a blank index inside its alphabet of {len(self.alphabet)}")

    @property
    def letters(self) -> tuple[str, ...]:
        """The symbols a CTC path can emit (the alphabet without the blank)."""
        return tuple(s for i, s in enumerate(self.alphabet) if i != self.blank)

    def decode(self, best: Sequence[int] | np.ndarray) -> str:
        """The transcript of a best-symbol-per-frame path: repeats collapsed, blanks dropped, ``|`` and
        ``▁`` read as spaces, letters in lower case (the text normalization's alphabet); phoneme
        tokens separated by spaces and words by `` | ``. Given scores ``(n_symbols, frames)``
        instead, the greedy path is taken first (with ``blank_bias``)."""
        best = np.asarray(best)
        if best.ndim == 2:
            best = self.greedy(best)
        if self.spaced:
            return self._tokens(best)
        out, prev = [], None
        for s in best:
            s = int(s)
            if s != prev and s != self.blank:
                c = self.alphabet[s]
                out.append(" " if c in ("|", "▁") else c.lower())
            prev = s
        return " ".join("".join(out).split())

    def greedy(self, scores) -> np.ndarray:
        """The best symbol per frame of scores ``(n_symbols, frames)``, the blank's score moved by
        ``blank_bias`` first."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.blank_bias and self.blank is not None:
            scores = scores.copy()
            scores[self.blank] += self.blank_bias
        return scores.argmax(0)

    def _tokens(self, best) -> str:
        words: list[list[str]] = [[]]
        prev = None
        for s in best:
            s = int(s)
            if s != prev and s != self.blank:
                tok = self.alphabet[s]
                if tok == self.boundary:
                    words.append([])
                else:
                    words[-1].append(tok)
            prev = s
        return " | ".join(" ".join(w) for w in words if w)

    def phones(self, scores: np.ndarray) -> list[str]:
        """ARPAbet phones of a phoneme recognizer's greedy path (scores ``(n_symbols, frames)``;
        word boundaries dropped, `text.IPA_TO_ARPABET`)."""
        if not self.spaced:
            raise ValueError("phones() reads phoneme recognizers; this output spells letters")
        return ipa_to_arpabet([t for t in self.decode(scores).split() if t != "|"])

    @property
    def spells(self) -> bool:
        """Whether transcripts (letters) can be written in this output's symbols."""
        return self.kind == "ctc" and not self.spaced

    def encode(self, text: str) -> list[int]:
        """Output indices of a normalized transcript (a–z, space, apostrophe) in this alphabet: each
        character as it is, else its upper case; a space as ``|`` or ``▁`` when the alphabet has no
        space (wav2vec 2.0, SentencePiece); an apostrophe the alphabet lacks is left out (a model
        trained without it never emits one). Any other missing character is an error naming it."""
        if self.spaced:
            raise ValueError("this model's symbols are phonemes: a letter transcript cannot be written in them")
        index = {s: i for i, s in enumerate(self.alphabet) if i != self.blank}
        space = next((c for c in (" ", "|", "▁") if c in index), None)
        out = []
        for c in text:
            if c in index:
                out.append(index[c])
            elif c.upper() in index:
                out.append(index[c.upper()])
            elif c == " " and space is not None:
                out.append(index[space])
            elif c == "'":
                continue
            else:
                raise ValueError(f"character {c!r} of the transcript is not in the model's alphabet "
                                 f"{''.join(self.letters)!r}")
        return out


@dataclass(frozen=True)
class Layer:
    """A layer to profile: a short name, its module path, channels and frame geometry (None for
    models without a time axis).

    ``time_axis``: where the frames are in the layer's output (``-1``: ``(batch, channels, time)``;
    ``1``: ``(batch, time, channels)``, as transformers give them). ``local``: whether the geometry
    is a receptive field; a layer after attention or global pooling sees the whole input, and its
    geometry is nominal (the frame rate and offset of the positions it carries, those of the last
    local layer of the same length)."""

    name: str
    path: str
    channels: int
    geometry: FrameGeometry | None
    time_axis: int = -1
    local: bool = True


@dataclass
class ModelDescription:
    module: nn.Module
    layers: tuple[Layer, ...]
    output: Output = field(default_factory=Output)
    features: FeatureConfig | None = None
    input_channels: int = 40
    name: str = "model"
    config: dict | None = None  # stored with results (the built-in model's config)
    factory: str | None = None  # MODULE:FUNCTION of a user's model (what retrains its architecture)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if name in (layer.name, layer.path):
                return layer
        raise ValueError(f"layer {name!r} is not described; layers: {[layer.name for layer in self.layers]}")

    @property
    def output_geometry(self) -> FrameGeometry:
        g = self.layers[-1].geometry
        if g is None:
            raise ValueError(f"{self.name} has no frame geometry (its output is per example)")
        return g


def _is_leaf(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


def _block_paths(model: nn.Module, tensors: set[str] | None = None) -> list[str]:
    """Every block output, in module order: containers (and the model itself) are opened; a custom
    module is a block, unless its output is not a tensor (``tensors``: the paths whose output is;
    a wrapper, a Hugging Face model returning a ``ModelOutput`` or a tuple); in a container, a leaf
    ends a block when it is an activation or the last child; a Sequential of leaves with one
    activation, at its end, is one block."""
    def opened(m: nn.Module, prefix: str) -> bool:
        return isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) or (
            tensors is not None and prefix not in tensors)

    def visit(m: nn.Module, prefix: str, root: bool) -> list[str]:
        if _is_leaf(m) or not (root or opened(m, prefix)):
            return [prefix]
        children = list(m.named_children())
        acts = [n for n, c in children if isinstance(c, ACTIVATIONS)]
        whole = tensors is None or prefix in tensors
        if not root and whole and all(_is_leaf(c) for _, c in children) and acts in ([], [children[-1][0]]):
            return [prefix]
        out = []
        for n, c in children:
            path = f"{prefix}.{n}" if prefix else n
            if _is_leaf(c) and not isinstance(c, ACTIVATIONS) and n != children[-1][0]:
                continue  # part of the block that the next activation (or the last child) ends
            out += visit(c, path, False)
        return out
    return visit(model, "", True)


def describe(module: nn.Module, example: torch.Tensor | None = None, layers: list[str] | None = None,
             output: Output | None = None, features: FeatureConfig | None = None, name: str = "model",
             time_axes: dict[str, int] | None = None) -> ModelDescription:
    """Describe any model by tracing it on ``example`` (default: 2 s of features of ``features``).

    ``layers``: module paths to profile (default: every block output, in execution order).
    ``time_axes``: the time axis (``-1`` or ``1``) of layers whose layout is known, for models of
    one input length, where it cannot be told by tracing a longer input."""
    if hasattr(module, "config") and hasattr(module.config, "layer_names") and layers is None and example is None:
        return describe_wav2letter(module, features, name)
    features = features or FEATURE_PRESETS["default"]
    if example is None:
        example = torch.zeros(1, features.n_mels, int(2 * features.frame_rate), dtype=next(module.parameters()).dtype)
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        traced = trace(module, example)
    finally:
        for m, mode in modes.items():
            m.training = mode
    out_shape = traced.output_shape
    if len(out_shape) < 2:
        raise InputError(name, f"the model's output is not a (batch, scores, ...) tensor (shape {out_shape})")
    sequence = len(out_shape) == 3
    n_scores = out_shape[1]
    if output is None:
        output = Output() if sequence else Output("classes", tuple(str(i) for i in range(n_scores)), None)
    encoder = output.kind == "encoder"
    if not encoder and n_scores != len(output.alphabet):
        raise InputError(name, f"the model gives {n_scores} scores per frame, its alphabet has "
                               f"{len(output.alphabet)} symbols (pass --alphabet)")
    paths = layers or _block_paths(module, set(traced.modules))
    named = dict(module.named_modules())
    longer = _trace_longer(module, example) if sequence else None
    if longer is not None and all(longer.modules.get(p, (None, None))[1] == s for p, (_, s) in traced.modules.items()):
        longer = None  # nothing grew: a model that pads every input to one length (Whisper's 30 s)
    places = None
    if sequence and any(g is None for g, _ in traced.modules.values()):
        with torch.no_grad():
            places = trace(module, example, positional=True)
    result = []
    for path in paths:
        if path not in named:
            raise InputError(name, f"no module {path!r}; modules: {[n for n in named if n][:12]}")
        if path not in traced.modules:
            kind = type(named[path]).__name__
            raise InputError(name, f"module {path!r} ({kind}) gave no tensor in the forward pass (it did not run, or "
                                   "it returns a tuple, as recurrent layers do); profile modules that return tensors")
        geo, shape = traced.modules[path]
        if not sequence:
            result.append(Layer(path, path, int(shape[1]), None))
            continue
        axis = (time_axes or {}).get(path) or _time_axis(
            name, path, shape, longer.modules.get(path, (None, ()))[1] if longer else None, places or traced)
        channels = int(shape[1] if axis == -1 else shape[2])
        if geo is not None and axis == -1:
            result.append(Layer(path, path, channels, geo))
        else:
            result.append(Layer(path, path, channels, _nominal(name, path, shape[axis], places), axis, False))
    if sequence and not encoder and (not result or result[-1].geometry != traced.geometry
                                     or result[-1].channels != n_scores or result[-1].time_axis != -1):
        if traced.geometry is not None:
            result.append(Layer("output", "", int(n_scores), traced.geometry))
        else:
            result.append(Layer("output", "", int(n_scores), _nominal(name, "", out_shape[2], places), -1, False))
    return ModelDescription(module, tuple(result), output, features, int(example.shape[1]), name)


def _trace_longer(module: nn.Module, example: torch.Tensor):
    """The model traced on a longer input (what tells time from channels), or None where it only
    takes one length (Whisper's 30 s windows)."""
    longer = torch.cat([example, example[..., : max(16, example.shape[-1] // 4)]], -1)
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        return trace(module, longer)
    except Exception:  # noqa: BLE001 - a model of one input length
        return None
    finally:
        for m, mode in modes.items():
            m.training = mode


def _time_axis(name: str, path: str, shape: tuple, longer_shape: tuple | None, traced) -> int:
    """The axis of frames in a 3-D layer output: the one that grows with the input; without a
    longer trace, the one whose size is a length some local layer has (``traced`` positionally:
    where the positions a layer carries are known)."""
    if len(shape) != 3:
        raise InputError(name, f"module {path!r} gives {tuple(shape)}: profiles need (batch, channels, time) or "
                               "(batch, time, channels) outputs")
    if longer_shape:
        grown = [a for a in (1, 2) if longer_shape[a] != shape[a]]
    else:
        lengths = {s[-1] for g, s in traced.modules.values() if g is not None and len(s) == 3}
        grown = [a for a in (1, 2) if shape[a] in lengths]
    if len(grown) != 1:
        raise InputError(name, f"module {path!r} gives {tuple(shape)}: which axis is time cannot be told (pass layers "
                               "whose outputs are (batch, channels, time) or (batch, time, channels))")
    return -1 if grown[0] == 2 else 1


def _nominal(name: str, path: str, length: int, traced) -> FrameGeometry:
    """The geometry of the places a non-local layer's frames stand for: that of the last module (in
    execution order, traced with ``positional``) whose output has as many frames along its last axis."""
    found = None
    for where, (geo, shape) in traced.modules.items():
        if geo is not None and len(shape) == 3 and shape[-1] == length:
            found = geo
        if where == path:  # what comes after a layer does not place its frames
            break
    if found is None:
        raise InputError(name, f"module {path or 'output'!r} is not local in time and no local layer before it has "
                               f"its {length} frames: its frames cannot be placed on the input")
    return found


def describe_wav2letter(model: nn.Module, features: FeatureConfig | None = None, name: str = "model") -> ModelDescription:
    """The built-in recognizer, from its config: blocks ``layer1`` … ``layerN`` and ``output``."""
    from ..asr.model import geometry

    cfg = model.config
    geo = geometry(cfg)
    channels = tuple(s.channels for s in cfg.layers) + (cfg.n_symbols,)
    layers = tuple(Layer(n, f"layers.{n}", c, geo[n]) for n, c in zip(cfg.layer_names, channels))
    return ModelDescription(model, layers, Output(), features or FEATURE_PRESETS["default"], cfg.n_mels, name,
                            cfg.to_dict())


def default_cam_layer(desc: ModelDescription) -> str:
    """Grad-CAM's layer: the built-in model's ``layer9``, else the block two before the output."""
    names = [layer.name for layer in desc.layers]
    return "layer9" if "layer9" in names else desc.layers[max(0, len(desc.layers) - 3)].path
