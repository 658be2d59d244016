"""The identity of a model's weights, which a resumed run checks before it adds to saved work.

A run that resumes (`naps --resume`, `sae --resume`, `findings --resume`) must not merge sums or
read back results computed with other weights: the built-in checkpoint can be replaced, a path can
be overwritten by a new training run. Names and paths say nothing about that; the bytes do.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-1 of every parameter and buffer (name, dtype, shape and bytes, in ``state_dict`` order).

    Equal for copies of a model, different when any weight differs; reads the module only."""
    h = hashlib.sha1()
    with torch.no_grad():
        for name, t in module.state_dict().items():
            t = t.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}\t{t.dtype}\t{t.numel()}\n".encode())
            if t.numel():
                h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()
