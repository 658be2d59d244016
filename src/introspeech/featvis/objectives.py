"""What feature visualization maximizes: an output letter (at a frame or averaged over frames), a
channel of a layer (mean over time/space), a single neuron (a channel at a position), and sums and
differences of those (e.g. ``letter:s - letter:z``).

An objective reads the activations of the layers it names (captured by forward hooks) and the model
output, and returns one scalar per batch row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..text import LETTERS

Reader = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass
class Objective:
    """A scalar per batch row, to be maximized; combine with ``+``, ``-`` and ``*`` (a number)."""

    name: str
    read: Reader
    layers: set[str] = field(default_factory=set)

    def __call__(self, acts: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        return self.read(acts, out)

    def __add__(self, other: Objective) -> Objective:
        return Objective(f"{self.name} + {other.name}", lambda a, o: self(a, o) + other(a, o), self.layers | other.layers)

    def __sub__(self, other: Objective) -> Objective:
        return Objective(f"{self.name} - {other.name}", lambda a, o: self(a, o) - other(a, o), self.layers | other.layers)

    def __mul__(self, k: float) -> Objective:
        return Objective(f"{k:g}·{self.name}", lambda a, o: k * self(a, o), self.layers)

    __rmul__ = __mul__


def _positions(t: torch.Tensor) -> torch.Tensor:
    """Mean over every axis after the channel axis: (B, C, …) → (B, C)."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def output(index: int, position: int | None = None, name: str = "") -> Objective:
    """Output unit ``index`` (a class, or a letter of a sequence model), at one position or averaged."""
    def read(acts, out):
        if out.dim() == 2:
            return out[:, index]
        x = out[:, index].flatten(1)
        return x[:, position] if position is not None else x.mean(1)
    return Objective(name or f"output {index}" + (f"@{position}" if position is not None else ""), read)


def letter(symbol: str, frame: int | None = None, alphabet: Sequence[str] | None = None) -> Objective:
    """A symbol's score (logit) at an output frame, or averaged over all output frames; ``alphabet``:
    the model's output symbols (default: the built-in letters; a phoneme recognizer's IPA tokens)."""
    symbols = LETTERS if alphabet is None else alphabet
    if not any(symbols):
        raise ValueError(f"letter:{symbol} needs an output over symbols; this model's output has none "
                         "(use channel:LAYER:K or neuron:LAYER:K@T)")
    if not symbol or symbol not in symbols:
        shown = "a–z, space and apostrophe" if alphabet is None else " ".join(str(c) for c in symbols if c)[:300]
        raise ValueError(f"unknown letter {symbol!r}; the output's symbols are {shown}")
    return output(list(symbols).index(symbol), frame, f"letter {symbol!r}" + (f"@{frame}" if frame is not None else ""))


def channel(layer: str, index: int) -> Objective:
    """Mean activation of one channel of a layer over all positions."""
    return Objective(f"{layer}:{index}", lambda acts, out: _positions(acts[layer])[:, index], {layer})


def neuron(layer: str, index: int, position: int | tuple[int, ...]) -> Objective:
    """One channel of a layer at one position (a frame, or (row, column))."""
    pos = position if isinstance(position, tuple) else (position,)
    return Objective(f"{layer}:{index}@{','.join(map(str, pos))}",
                     lambda acts, out: acts[layer][(slice(None), index) + pos], {layer})


_TERM = re.compile(r"^(letter|channel|neuron|class):([^@]+?)(?:@([\d,]+))?$")


def parse(spec: str, alphabet: Sequence[str] | None = None) -> Objective:
    """``letter:s``, ``letter:s@40``, ``channel:layer9:17``, ``neuron:layer9:17@12``, ``class:3``,
    joined by `` + `` / `` - `` (spaces required around the operators); ``alphabet``: the output's
    symbols that ``letter:`` names (default: the built-in letters)."""
    tokens = re.split(r"\s+([+-])\s+", spec.strip())
    total: Objective | None = None
    sign = "+"
    for i, tok in enumerate(tokens):
        if i % 2 == 1:
            sign = tok
            continue
        m = _TERM.match(tok)
        if not m:
            raise ValueError(f"cannot read objective {tok!r} (e.g. letter:s, letter:s@40, channel:layer9:17, "
                             "neuron:layer9:17@12, class:3)")
        kind, arg, at = m.groups()
        pos = tuple(int(p) for p in at.split(",")) if at else None
        if kind == "letter":
            term = letter(arg.replace("_", " "), pos[0] if pos else None, alphabet)
        elif kind == "class":
            term = output(int(arg), pos[0] if pos else None, f"class {arg}")
        else:
            layer, _, idx = arg.rpartition(":")
            if not layer:
                raise ValueError(f"objective {tok!r} needs LAYER:CHANNEL")
            if kind == "channel":
                term = channel(layer, int(idx))
            else:
                if pos is None:
                    raise ValueError(f"neuron objective {tok!r} needs a position (@frame)")
                term = neuron(layer, int(idx), pos if len(pos) > 1 else pos[0])
        total = term if total is None else (total + term if sign == "+" else total - term)
    assert total is not None
    return total
