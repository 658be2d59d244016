"""Targets: which output score(s) to explain, turned into the gradient fed to the output."""

from __future__ import annotations

from typing import Any

import torch

Target = Any  # int | (class, frame) | tensor | "predicted" | ("predicted", frame) | explicit output gradient


def output_gradient(output: torch.Tensor, target: Target) -> torch.Tensor:
    """One-hot selector shaped like ``output`` for the given target(s).

    - ``(B, C)`` outputs: a class index, or a tensor of B class indices, or ``"predicted"``.
    - ``(B, C, T)`` outputs: a ``(class, frame)`` pair, a ``(B, 2)`` tensor of pairs, or
      ``("predicted", frame)`` (the best class at that frame).
    - any output: an explicit tensor shaped like the output (used as given).
    """
    b = output.shape[0]
    if isinstance(target, torch.Tensor) and target.shape == output.shape and output.dim() > 1 \
            and not (output.dim() == 2 and target.dtype in (torch.int64, torch.int32)):
        return target.to(output)
    sel = torch.zeros_like(output)
    rows = torch.arange(b, device=output.device)
    if output.dim() == 2:
        if isinstance(target, str) and target == "predicted":
            cls = output.argmax(1)
        elif isinstance(target, int):
            cls = torch.full((b,), target, device=output.device)
        elif isinstance(target, torch.Tensor) and target.shape == (b,):
            cls = target.to(output.device).long()
        else:
            raise ValueError(f"target for (batch, classes) outputs must be an int, a tensor of {b} classes, "
                             f"'predicted' or an output-shaped gradient, got {target!r}")
        _check_range(cls, output.shape[1], "class")
        sel[rows, cls] = 1
        return sel
    if output.dim() == 3:
        if isinstance(target, tuple) and len(target) == 2 and target[0] == "predicted":
            frame = torch.full((b,), int(target[1]), device=output.device)
            _check_range(frame, output.shape[2], "frame")
            cls = output[rows, :, frame].argmax(1)
        elif isinstance(target, tuple) and len(target) == 2:
            cls = torch.full((b,), int(target[0]), device=output.device)
            frame = torch.full((b,), int(target[1]), device=output.device)
        elif isinstance(target, torch.Tensor) and target.shape == (b, 2):
            cls, frame = target[:, 0].long().to(output.device), target[:, 1].long().to(output.device)
        else:
            raise ValueError(f"target for (batch, classes, frames) outputs must be a (class, frame) pair, a ({b}, 2) "
                             f"tensor, ('predicted', frame) or an output-shaped gradient, got {target!r}")
        _check_range(cls, output.shape[1], "class")
        _check_range(frame, output.shape[2], "frame")
        sel[rows, cls, frame] = 1
        return sel
    raise ValueError(f"outputs of shape {tuple(output.shape)}: pass an explicit output-shaped gradient as target")


def _check_range(idx: torch.Tensor, n: int, what: str) -> None:
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"target {what} {idx.tolist()} out of range for {n} {what}s")
