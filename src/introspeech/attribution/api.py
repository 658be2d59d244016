"""One entry point for every method: ``attribute(model, inputs, target, method=..., **options)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from . import methods as m
from .cam import GradCAM
from .hooks import preserved
from .targets import Target


def _grad_cam(model, x, target, layer, relu: bool = True, mode: str = "linear"):
    return GradCAM(model, layer, relu, mode)(x, target)


def _guided_grad_cam(model, x, target, layer, mode: str = "linear"):
    target = m.resolve_target(model, x, target)
    return m.guided_backprop(model, x, target) * GradCAM(model, layer, True, mode)(x, target)


METHODS: dict[str, Callable] = {
    "gradient": m.gradient,
    "gradient_x_input": m.gradient_x_input,
    "integrated_gradients": m.integrated_gradients,
    "smoothgrad": m.smoothgrad,
    "guided_backprop": m.guided_backprop,
    "deconvnet": m.deconvnet,
    "lrp": m.lrp,
    "deep_taylor": m.deep_taylor,
    "grad_cam": _grad_cam,
    "guided_grad_cam": _guided_grad_cam,
}
ALIASES = {"saliency": "gradient", "input_x_gradient": "gradient_x_input", "gradient*input": "gradient_x_input",
           "ig": "integrated_gradients", "guided": "guided_backprop", "gradcam": "grad_cam",
           "guided_gradcam": "guided_grad_cam", "dtd": "deep_taylor"}
LOCAL_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop",
                 "deconvnet", "lrp", "deep_taylor")
"""Methods whose map for an output frame depends only on that frame's receptive field."""


def method_function(method: str) -> tuple[str, Callable]:
    name = ALIASES.get(method, method)
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)} (aliases: {sorted(ALIASES)})")
    return name, METHODS[name]


def check_options(name: str, fn: Callable, options: dict) -> None:
    params = list(inspect.signature(fn).parameters)[3:]
    bad = [k for k in options if k not in params]
    if bad:
        raise TypeError(f"method {name!r} has no option(s) {bad}; its options: {params}")


def attribute(model: nn.Module, inputs: torch.Tensor, target: Target, method: str = "gradient",
              **options) -> torch.Tensor:
    """Attribution map shaped like ``inputs`` for each row's target.

    Targets: a class index for ``(B, C)`` outputs; a ``(class, frame)`` pair for ``(B, C, T)``
    outputs; a tensor of per-row targets; ``"predicted"`` / ``("predicted", frame)``; or an explicit
    output-gradient tensor. Methods and their options: see `METHODS` and each function's docstring.
    The model runs in eval mode and is left exactly as it was, also when an exception is raised.
    """
    name, fn = method_function(method)
    check_options(name, fn, options)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise ValueError(f"inputs must be a batched tensor (batch, ...), got {type(inputs).__name__} "
                         f"{tuple(getattr(inputs, 'shape', ()))}")
    with preserved(model):
        return fn(model, inputs, target, **options)
