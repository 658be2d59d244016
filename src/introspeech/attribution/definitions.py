"""One record per attribution method, read by every path that runs one.

`attribute`, both all-frames engines, the sanity checks, feature visualization and the report
look a method up here: its name and aliases, its options (defaults, types), whether it is local
in time (the map of an output frame depends only on that frame's receptive field), whether it
multiplies by the input, how it treats each kind of layer, and the function that computes it.
Defaults live only here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import methods as m
from . import perturbation as pt
from .cam import GradCAM
from .composites import Composite

NUMBER = (int, float)
TENSORISH = (torch.Tensor, int, float)


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    types: tuple[type, ...]
    help: str

    def check(self, method: str, value: Any) -> None:
        if value is None and self.default is None:
            return
        if isinstance(value, bool) and bool not in self.types:
            raise TypeError(f"option {self.name!r} of {method} must be {self._kinds()}, got {value!r}")
        if not isinstance(value, self.types):
            raise TypeError(f"option {self.name!r} of {method} must be {self._kinds()}, got {type(value).__name__}")

    def _kinds(self) -> str:
        return " or ".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class Method:
    """A method: what it computes and what every engine needs to know about it."""

    name: str
    summary: str
    options: tuple[Option, ...]
    local: bool
    times_input: bool
    layers: str  # how each layer type is treated (the README's method table)
    plan: Callable | None = None  # local methods: (model, x, selector, **options) -> methods.Plan
    compute: Callable | None = None  # non-local methods: (model, x, target, **options) -> map
    aliases: tuple[str, ...] = ()
    linear_in_target: Callable[[dict], bool] = lambda o: True  # can frames share one backward pass?
    completeness: Callable[[dict], str] = lambda o: ""  # Σ map should equal: "score", "score-baseline", "score-root"
    needs: Callable[[dict], set[str]] = lambda o: set()  # context the options still need: "layer", "bounds"
    modulated_by: str = ""  # a CAM map multiplied by this local method's map (guided Grad-CAM)
    frames_note: str = ""  # what the all-frames engines do with it, beyond cone/colour/loop
    draws: Callable[[dict, torch.Tensor], dict] = lambda o, x: {}  # its random draws for input x, as options
    frames: Callable | None = None  # perturbation methods: (model, x, frames, classes, **options) -> dense maps

    def for_input(self, options: dict, x: torch.Tensor) -> dict:
        """``options`` with the method's random draws for the whole input ``x`` made explicit, so that
        a piece of the input (a long recording explained in pieces) sees its slice of the same draw."""
        return {**options, **self.draws(self.resolve(options), x)}

    def resolve(self, options: dict) -> dict:
        """The options with defaults filled in; unknown names and wrong types raise."""
        known = {o.name: o for o in self.options}
        bad = [k for k in options if k not in known]
        if bad:
            raise TypeError(f"method {self.name!r} has no option(s) {bad}; its options: {list(known)}")
        for k, v in options.items():
            known[k].check(self.name, v)
        return {o.name: options.get(o.name, o.default) for o in self.options}

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}

    def with_context(self, options: dict, layer=None, low=None, high=None) -> dict:
        """``options`` plus what the method needs from the caller's context and was not given:
        the CAM layer, the z^B input bounds (for composites and deep Taylor rules that use them)."""
        need = self.needs(self.resolve(options))
        extra = {}
        if "layer" in need and layer is not None:
            extra["layer"] = layer
        if "bounds" in need and low is not None and high is not None:
            extra.update(low=low, high=high)
        return {**options, **extra}


def _need_layer(name: str, layer) -> None:
    if layer is None:
        raise ValueError(f"{name} needs layer= (the module path of the layer whose activations it weighs)")


def _grad_cam(model, x, target, layer, relu: bool = True, mode: str = "linear"):
    _need_layer("grad_cam", layer)
    return GradCAM(model, layer, relu, mode)(x, target)


def _guided_grad_cam(model, x, target, layer, mode: str = "linear"):
    from .targets import output_gradient

    _need_layer("guided_grad_cam", layer)
    target = resolve_predicted(model, x, target)
    with torch.no_grad():
        selector = output_gradient(model(x), target)
    guided = m.evaluate(model, m.guided_backprop(model, x, selector), selector, False)
    return guided * GradCAM(model, layer, True, mode)(x, target)


def resolve_predicted(model, x, target):
    """``"predicted"`` / ``("predicted", frame)`` as explicit indices (on the unmodified input)."""
    from .targets import output_gradient

    if isinstance(target, str) or (isinstance(target, tuple) and target and target[0] == "predicted"):
        with torch.no_grad():
            g = output_gradient(model(x), target)
        if g.dim() == 3:
            cls = g[:, :, int(target[1])].argmax(1)
            return torch.stack([cls, torch.full_like(cls, int(target[1]))], 1)
        return g.argmax(1)
    return target


_COMPOSITE = Option("composite", "epsilon", (str, Composite), "a preset name or a Composite")
_CANONIZE = Option("canonize", True, (bool,), "fold each BatchNorm into the Conv/Linear layer it follows")
_LOW = Option("low", None, TENSORISH, "z^B lower bound of the input, per feature (broadcast)")
_HIGH = Option("high", None, TENSORISH, "z^B upper bound of the input")
_LAYER = Option("layer", None, (str, torch.nn.Module), "module path (or unique suffix) of the CAM layer")
_MODE = Option("mode", "linear", (str,), "upsampling: linear/bilinear or nearest")
BOX_COMPOSITES = ("epsilon-gamma-box", "deep-taylor")


def _needs_layer(o: dict) -> set[str]:
    return {"layer"} if o["layer"] is None else set()


def _needs_bounds(o: dict) -> set[str]:
    uses_box = o.get("composite") in BOX_COMPOSITES or ("root" in o and o["root"] is None)
    return {"bounds"} if uses_box and (o["low"] is None or o["high"] is None) else set()


_RELU_ONLY = "ReLU: modified; Conv/Linear/BatchNorm/pools/reshapes: gradient; other activations: error"
_LRP_LAYERS = ("Conv1d/2d (grouped, dilated, 'same' padding), Linear: composite's rule; BatchNorm folded (or its own "
               "ε rule); LayerNorm/GroupNorm/RMSNorm: ε with σ held; additions: shared ε; avg pools: proportional; "
               "max pools: winner; ReLU: composite's activation rule; GELU/SiLU/sigmoid/tanh: identity; GLU and "
               "products: uniform; MultiheadAttention, scaled dot-product or explicit softmax attention: AttnLRP or "
               "CP-LRP (`attention`); other activations, InstanceNorm: error")

_PERTURB_BASELINE = Option("baseline", 0.0, TENSORISH, "replacement value (0: the corpus mean of z-normalized features)")
_BATCH = Option("batch", 32, (int,), "perturbed inputs per forward pass")
_ANY_FORWARD = "any layer (forward passes only)"
METHODS: dict[str, Method] = {d.name: d for d in (
    Method("gradient", "∂f/∂x", (Option("abs", False, (bool,), "magnitude of the gradient"),), True, False,
           "any differentiable layer", m.gradient, aliases=("saliency",)),
    Method("gradient_x_input", "x ⊙ ∂f/∂x", (), True, True, "any differentiable layer", m.gradient_x_input,
           aliases=("input_x_gradient", "gradient*input")),
    Method("integrated_gradients", "(x − x̄) ⊙ ∫ ∂f/∂x along the path from the baseline x̄", (
        Option("baselines", None, TENSORISH, "baseline x̄ (default zeros)"),
        Option("steps", 50, (int,), "points of the integral rule"),
        Option("integration", "gausslegendre", (str,), "gausslegendre or riemann_left/right/middle/trapezoid"),
        Option("internal_batch_size", None, (int,), "most rows of one backward pass"),
    ), True, True, "any differentiable layer", m.integrated_gradients, aliases=("ig",),
        completeness=lambda o: "score-baseline"),
    Method("smoothgrad", "mean gradient at noisy copies of x", (
        Option("stdev", 0.15, NUMBER, "noise standard deviation"),
        Option("samples", 25, (int,), "noisy copies"),
        Option("seed", 0, (int,), "seed of the noise"),
        Option("noise", None, (torch.Tensor,), "explicit noise (samples·B, ...), replaces the seeded draw"),
        Option("inner", "gradient", (str,), "gradient or gradient_x_input"),
    ), True, False, "any differentiable layer", m.smoothgrad,
        draws=lambda o, x: {} if o["noise"] is not None else {"noise": m.smoothgrad_noise(x, o["stdev"], o["samples"],
                                                                                           o["seed"])}),
    Method("guided_backprop", "gradient, ReLUs pass positive signal where their input was positive", (), True,
           False, _RELU_ONLY, m.guided_backprop, aliases=("guided",)),
    Method("deconvnet", "gradient, ReLUs pass positive signal", (), True, False, _RELU_ONLY, m.deconvnet),
    Method("lrp", "layer-wise relevance propagation", (
        _COMPOSITE, _CANONIZE, _LOW, _HIGH,
        Option("epsilon", 1e-6, NUMBER, "ε of ε-rule layers (presets)"),
        Option("gamma", 0.25, NUMBER, "γ of γ-rule layers (presets)"),
        Option("favour", "output", (str,), "γ favours contributions of the output's sign, or 'positive' ones"),
        Option("attention", "attnlrp", (str,), "softmax attention: 'attnlrp' (through the softmax) or 'cp' (weights "
               "held constant)"),
    ), True, True, _LRP_LAYERS, m.lrp, completeness=lambda o: "score", needs=_needs_bounds),
    Method("deep_taylor", "deep Taylor decomposition (rules, or a root point)", (
        Option("root", None, (torch.Tensor, str), "None: z^B/z⁺ rules; a root tensor; or 'search'"),
        _LOW, _HIGH, _CANONIZE,
    ), True, True, _LRP_LAYERS + " (rules form); any differentiable layer (root form)", m.deep_taylor,
        aliases=("dtd",), linear_in_target=lambda o: not isinstance(o["root"], str),
        completeness=lambda o: "score" if o["root"] is None else "score-root", needs=_needs_bounds,
        frames_note="`root='search'`: loop only"),
    Method("grad_cam", "ReLU(Σ_k mean(∂y/∂A_k) A_k) at a layer, upsampled", (
        _LAYER, Option("relu", True, (bool,), "ReLU of the map"), _MODE,
    ), False, False, "any differentiable layer", compute=_grad_cam, aliases=("gradcam",), needs=_needs_layer),
    Method("guided_grad_cam", "guided backprop ⊙ Grad-CAM", (_LAYER, _MODE), False, False, _RELU_ONLY,
           compute=_guided_grad_cam, aliases=("guided_gradcam",), needs=_needs_layer, modulated_by="guided_backprop"),
    Method("occlusion", "mean over covering patches of f(x) − f(x with the patch at the baseline)", (
        Option("window", (8, 10), (tuple, list), "patch over the non-batch axes (a shorter tuple: leading axes whole)"),
        Option("strides", None, (tuple, list), "patch steps (default: the window, no overlap)"),
        _PERTURB_BASELINE, _BATCH,
    ), False, False, _ANY_FORWARD, compute=pt.occlusion, frames=pt.frames_occlusion,
        frames_note="perturbation: one pass per patch, all frames at once"),
    Method("segments", "time spans scored by leaving each out or by random masking, spread over the span", (
        Option("segments", None, (list, tuple), "(start, end) input frames (default: fixed windows)"),
        Option("window", 10, (int,), "frames of a fixed window"),
        Option("mode", "leave_one_out", (str,), "leave_one_out or random"),
        _PERTURB_BASELINE,
        Option("samples", 200, (int,), "random masks"),
        Option("keep", 0.5, NUMBER, "probability a span is kept in a random mask"),
        Option("seed", 0, (int,), "seed of the masks"),
        _BATCH,
    ), False, False, _ANY_FORWARD, compute=pt.segments, frames=pt.frames_segments,
        frames_note="perturbation: one pass per mask, all frames at once"),
)}
NAMED: dict[str, tuple[str, dict]] = {
    "gradient": ("gradient", {}),
    "gradient_x_input": ("gradient_x_input", {}),
    "integrated_gradients": ("integrated_gradients", {"steps": 16}),
    "smoothgrad": ("smoothgrad", {"samples": 8, "stdev": 0.15}),
    "guided_backprop": ("guided_backprop", {}),
    "deconvnet": ("deconvnet", {}),
    "lrp_epsilon": ("lrp", {"composite": "epsilon"}),
    "cp_lrp": ("lrp", {"composite": "epsilon", "attention": "cp"}),
    "lrp_zplus": ("lrp", {"composite": "epsilon-plus"}),
    "lrp_alpha2_beta1": ("lrp", {"composite": "alpha2-beta1"}),
    "deep_taylor": ("deep_taylor", {}),
    "grad_cam": ("grad_cam", {}),
    "guided_grad_cam": ("guided_grad_cam", {}),
    "occlusion": ("occlusion", {"window": (8, 10)}),
    "segments": ("segments", {"window": 10}),
}
"""The method configurations that the sanity checks and the explanation table compare, by the
names the reports and summaries use: (method, options). On a model with softmax attention
``lrp_epsilon`` is AttnLRP and ``cp_lrp`` CP-LRP; elsewhere the two are the same map."""
ATTENTION_VARIANTS = ("cp_lrp",)
"""Named methods that differ from another only on models with attention (left out of 'all' elsewhere)."""


def has_attention(module) -> bool:
    """Whether a module contains softmax attention (an ``nn.MultiheadAttention`` or a module whose
    class is named after attention: openai-whisper's, hama's, a Conformer's)."""
    import torch.nn as tnn

    return any(isinstance(m, tnn.MultiheadAttention) or "attention" in type(m).__name__.lower()
               for m in module.modules())


def named_methods(attention: bool) -> list[str]:
    """The named methods 'all' stands for: the attention variants only for a model with attention."""
    return [n for n in NAMED if attention or n not in ATTENTION_VARIANTS]
ALIASES = {a: d.name for d in METHODS.values() for a in d.aliases}
LOCAL_METHODS = tuple(n for n, d in METHODS.items() if d.local)
"""Methods whose map for an output frame depends only on that frame's receptive field."""


def method(name: str) -> Method:
    """The record of a method by name or alias."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)} (aliases: {sorted(ALIASES)})")
    return METHODS[key]


def _default(v) -> str:
    return "—" if v is None else repr(v)


def method_table() -> str:
    """The README's method table, generated from the records (a test keeps the README in step)."""
    rows = ["| method | computes | options (defaults) | local | × input | layers | all-frames engines |",
            "| --- | --- | --- | :---: | :---: | --- | --- |"]
    for d in METHODS.values():
        opts = ", ".join(f"`{o.name}`={_default(o.default)}" for o in d.options) or "—"
        name = f"`{d.name}`" + (f" ({', '.join(f'`{a}`' for a in d.aliases)})" if d.aliases else "")
        engines = "cone, colour, batched, loop" if d.local else "exact CAM path (per-frame gradient cones, coloured)"
        if d.frames is not None:
            engines = d.frames_note
        elif d.frames_note:
            engines += f" ({d.frames_note})"
        rows.append(f"| {name} | {d.summary} | {opts} | {'yes' if d.local else 'no'} | "
                    f"{'yes' if d.times_input else 'no'} | {d.layers} | {engines} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(method_table())
