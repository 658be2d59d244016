"""Small random networks with BatchNorm for attribution tests (float64)."""

import torch
from torch import nn


def _randomize_bn(net: nn.Module, gen: torch.Generator) -> nn.Module:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen, dtype=torch.float64) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen, dtype=torch.float64) * 0.3)
    return net.eval()


def conv1d_net(seed: int = 0, stride: int = 2, dilation: int = 1, padding: int = 2) -> nn.Module:
    """(B, 6, T) → (B, 5, T') sequence scores, like a tiny Wav2Letter."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv1d(6, 8, 5, stride=stride, padding=padding, dilation=dilation, bias=False), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 5, 1),
    ).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def conv2d_net(seed: int = 0) -> nn.Module:
    """(B, 2, 10, 10) → (B, 4) classifier."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=1, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AvgPool2d(5), nn.Flatten(), nn.Linear(6, 4),
    ).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def dense_net(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(7, 9, bias=bias), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 6, bias=bias), nn.ReLU(),
                        nn.Linear(6, 3, bias=bias)).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def model_state(net: nn.Module) -> dict:
    """Everything `attribute` must leave untouched."""
    return {
        "params": {k: v.detach().clone() for k, v in net.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in net.named_buffers()},
        "hooks": [(n, len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks),
                   len(getattr(m, "_backward_pre_hooks", {}))) for n, m in net.named_modules()],
        "modes": [(n, m.training) for n, m in net.named_modules()],
        "requires_grad": [(k, v.requires_grad) for k, v in net.named_parameters()],
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["hooks"] == b["hooks"] and a["modes"] == b["modes"] and a["requires_grad"] == b["requires_grad"]
    for kind in ("params", "buffers"):
        assert a[kind].keys() == b[kind].keys()
        for k in a[kind]:
            assert torch.equal(a[kind][k], b[kind][k]), k
