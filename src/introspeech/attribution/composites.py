"""Composites: which rule each layer gets. Presets follow REFERENCES §2 and Zennit's names.

A composite is resolved against a traced model: ``first`` is the first Linear/Conv layer to run,
``last`` the last one (the output layer of a classifier or a CTC model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .attention import NONLINEAR_TYPES, NORM_TYPES, OPEN, ModuleRule, OpRules
from .hooks import BN_TYPES, LINEAR_TYPES, PASS_TYPES, POOL_TYPES, Backward, Traced
from .rules import (
    ActivationRule,
    AlphaBeta,
    Epsilon,
    Gamma,
    LinearRule,
    Pass,
    ZBox,
    ZPlus,
)

CONV_TYPES = (nn.Conv1d, nn.Conv2d)


def _stabilizer() -> LinearRule:
    return Epsilon(1e-9)


def _norm() -> LinearRule:
    return Epsilon(1e-6)


@dataclass
class Composite:
    """Rule choice per layer: by layer name first, then by position (first/last), then by type.

    - ``conv`` / ``dense``: Conv1d/Conv2d and Linear layers (a following BatchNorm folded in when
      ``canonize`` is on and the layer's output goes to that BatchNorm only);
    - ``norm``: a BatchNorm that is not folded (``canonize=False``, or one that follows no
      Conv/Linear layer), as the per-channel affine layer it is;
    - ``pool``: average pools (adaptive too): relevance in proportion to each input's share;
    - ``addition``: additions of branches written between modules (residual connections);
    - ``activation``: every ReLU (modules and functional calls). Max-pooling passes relevance to
      the winner of each window (its gradient); reshapes, zero pads and dropout pass it unchanged;
    - a parameter-free module of another type is opened: the operations its ``forward`` calls get
      their rules as code between modules does (and an operation without one raises);
    - attention models (op_rules.py): GELU, SiLU, sigmoid and tanh pass relevance (identity rule);
      LayerNorm, GroupNorm and RMSNorm get ``norm`` on the map with their standard deviation held;
      GLU and products of input-dependent tensors share it (uniform rule); softmax attention follows
      ``attention`` (``"attnlrp"``: through the softmax, query and key sharing half of the weights'
      relevance; ``"cp"``: the weights held constant, conservative); ``epsilon`` stabilizes the
      bilinear products and the additions of constants (masks, fixed positions).
    """

    conv: Callable[[], LinearRule] = Epsilon
    dense: Callable[[], LinearRule] = Epsilon
    first: Callable[[], LinearRule] | None = None
    last: Callable[[], LinearRule] | None = None
    by_name: dict[str, LinearRule] = field(default_factory=dict)
    activation: ActivationRule = Pass
    norm: Callable[[], LinearRule] = _norm
    pool: Callable[[], LinearRule] = _stabilizer
    addition: Callable[[], LinearRule] = _stabilizer
    name: str = "custom"
    attention: str = "attnlrp"
    epsilon: float = 1e-6

    def ops(self) -> OpRules:
        """The rules of attention models' operations between and inside modules."""
        return OpRules(self.attention, self.epsilon, self.norm(), self.dense())

    def resolve(self, traced: Traced, method: str = "lrp", canonize: bool = True
                ) -> dict[str, LinearRule | ActivationRule]:
        """Module name → rule for every leaf of the traced model; unsupported layers raise."""
        linear = [n for n, m in traced.order if isinstance(m, LINEAR_TYPES)]
        rules: dict[str, LinearRule | ActivationRule] = {}
        for name, m in traced.order:
            if name in rules:
                continue
            if isinstance(m, BN_TYPES) and canonize and name in traced.folded:
                if name in self.by_name:
                    raise ValueError(f"BatchNorm {name!r} is folded into {traced.folded[name]!r}; pass canonize=False "
                                     "to give it a rule of its own")
                continue
            if name in self.by_name:
                rules[name] = self.by_name[name]
            elif isinstance(m, LINEAR_TYPES):
                if self.first is not None and linear and name == linear[0]:
                    rules[name] = self.first()
                elif self.last is not None and linear and name == linear[-1]:
                    rules[name] = self.last()
                else:
                    rules[name] = self.conv() if isinstance(m, CONV_TYPES) else self.dense()
            elif isinstance(m, POOL_TYPES):
                rules[name] = self.pool()
            elif isinstance(m, nn.ReLU):
                rules[name] = self.activation
            elif isinstance(m, NONLINEAR_TYPES):
                rules[name] = Pass
            elif isinstance(m, BN_TYPES + NORM_TYPES):
                rules[name] = self.norm()
            elif isinstance(m, nn.GLU):
                rules[name] = ModuleRule("glu")
            elif isinstance(m, nn.Softmax):
                rules[name] = ModuleRule("softmax")
            elif isinstance(m, PASS_TYPES + (nn.Embedding,)):  # an embedding looks up integers: a constant
                continue
            elif _why(m) or any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(False)):
                raise unsupported(name, m, method, _why(m))
            else:  # a parameter-free module of its own (transformers' GELUActivation): its operations get their rules
                rules[name] = OPEN
        for name, m in traced.units:
            if isinstance(m, nn.MultiheadAttention):
                rules[name] = self.by_name.get(name, ModuleRule("mha", unit=True))
        return rules

    def backward(self, traced: Traced, method: str = "lrp", canonize: bool = True) -> Backward:
        """The modified backward pass this composite defines on a traced model."""
        return Backward(method, self.resolve(traced, method, canonize), traced, canonize, relevance=True,
                        activation=self.activation, addition=self.addition(), ops=self.ops())


def _why(m: nn.Module) -> str:
    if isinstance(m, (nn.InstanceNorm1d, nn.InstanceNorm2d)):
        return "instance normalization has no LRP rule here (LayerNorm, GroupNorm, RMSNorm and BatchNorm do)"
    if isinstance(m, (nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Mish, nn.Hardswish)):
        return "the identity rule covers ReLU, GELU, SiLU, sigmoid and tanh only"
    return ""


def unsupported(name: str, module: nn.Module, method: str, why: str = "") -> TypeError:
    return TypeError(f"module {name!r} ({type(module).__name__}) is not supported by {method}"
                     f"{': ' + why if why else ''}. Methods that handle any differentiable layer: gradient, "
                     "gradient_x_input, integrated_gradients, smoothgrad, grad_cam")


def _zbox(low, high) -> Callable[[], LinearRule]:
    return lambda: ZBox(low, high)


def preset(name: str, low: torch.Tensor | float | None = None, high: torch.Tensor | float | None = None,
           epsilon: float = 1e-6, gamma: float = 0.25, favour: str = "output", attention: str = "attnlrp") -> Composite:
    """A named composite: epsilon, epsilon-plus, epsilon-gamma-box, alpha2-beta1, deep-taylor.

    ``low``/``high`` are the z^B bounds of the first layer's input (e.g. per Mel bin); ``epsilon``
    the ε of ε-rule layers, of normalizations (BatchNorm not folded, LayerNorm, GroupNorm, RMSNorm),
    of additions of branches and of the attention rules; ``gamma``/``favour`` those of γ;
    ``attention`` the variant through softmax attention (``"attnlrp"`` or ``"cp"``). Average
    pools keep ε = 1e-9 (a stabilizer only)."""
    eps = lambda: Epsilon(epsilon)  # noqa: E731
    gam = lambda: Gamma(gamma, epsilon, favour)  # noqa: E731
    needs_box = name in ("epsilon-gamma-box", "deep-taylor")
    if needs_box and (low is None or high is None):
        raise ValueError(f"composite {name!r} needs the input bounds low= and high= for its z^B first layer")
    presets = {
        "epsilon": Composite(eps, eps),
        "epsilon-plus": Composite(ZPlus, eps),
        "epsilon-gamma-box": Composite(gam, eps, first=_zbox(low, high) if needs_box else None, last=eps),
        "alpha2-beta1": Composite(lambda: AlphaBeta(2.0, 1.0), eps),
        "deep-taylor": Composite(ZPlus, ZPlus, first=_zbox(low, high) if needs_box else None),
    }
    if name not in presets:
        raise ValueError(f"unknown composite {name!r}; choose from {sorted(presets)}")
    c = presets[name]
    c.name = name
    c.norm = c.addition = eps
    c.epsilon, c.attention = epsilon, attention
    c.ops()  # checks the attention variant
    return c


COMPOSITES = ("epsilon", "epsilon-plus", "epsilon-gamma-box", "alpha2-beta1", "deep-taylor")
