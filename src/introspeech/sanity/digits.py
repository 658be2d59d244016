"""A small image CNN on scikit-learn's 8×8 digits, trained in seconds: the 2-D model of the
sanity checks (with true labels, and with permuted labels for data randomization)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn


class DigitsCNN(nn.Sequential):
    """conv(1→16) ReLU conv(16→32) ReLU maxpool(2) conv(32→32) ReLU flatten linear(512→10)."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 4 * 4, 10))


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/test split (80/20, seeded) of the digits as ``(N, 1, 8, 8)`` in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n = int(0.8 * len(y))
    return x[perm[:n]], y[perm[:n]], x[perm[n:]], y[perm[n:]]


_TRAINED: dict[tuple, dict[str, torch.Tensor]] = {}  # the weights of the last few trainings


def train_digits(x: torch.Tensor, y: torch.Tensor, epochs: int = 40, seed: int = 0,
                 make: Callable[[], nn.Module] = DigitsCNN) -> nn.Module:
    """Adam, mini-batches of 64, seeded; a few seconds on 2 cores. ``make``: the architecture.

    Deterministic, so the weights of a training with the same data, settings and architecture are
    kept and given to the next such call as a new module (the demo's sanity checks and
    explanations train the same CNN)."""
    key = (make, epochs, seed, _digest(x), _digest(y))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
        if key in _TRAINED:
            model.load_state_dict(_TRAINED[key])
            return model.eval()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(64):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    while len(_TRAINED) >= 4:
        _TRAINED.pop(next(iter(_TRAINED)))
    _TRAINED[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model.eval()


def _digest(t: torch.Tensor) -> tuple:
    return t.shape, t.dtype, hashlib.sha1(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def permuted(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Labels shuffled across examples (data randomization)."""
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))]
