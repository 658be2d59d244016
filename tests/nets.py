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


class Residual(nn.Module):
    """act(main(x) + skip(x)): the residual connection of Jasper/QuartzNet and ResNet blocks."""

    def __init__(self, main: nn.Module, skip: nn.Module, inplace: bool = False):
        super().__init__()
        self.main, self.skip, self.act = main, skip, nn.ReLU(inplace=inplace)

    def forward(self, x):
        return self.act(self.main(x) + self.skip(x))


def separable(c_in: int, c_out: int, k: int, dilation: int = 1, relu: bool = True, bias: bool = False) -> list:
    """A QuartzNet sub-block: depthwise Conv1d ('same' padding), pointwise Conv1d, BatchNorm, ReLU."""
    parts = [nn.Conv1d(c_in, c_in, k, padding="same", dilation=dilation, groups=c_in, bias=bias),
             nn.Conv1d(c_in, c_out, 1, bias=bias), nn.BatchNorm1d(c_out)]
    return parts + [nn.ReLU()] if relu else parts


def quartznet_net(seed: int = 0, c: int = 8, bias: bool = False, n_in: int = 6, n_out: int = 5,
                  repeats: int = 2, kernels: tuple[int, ...] = (5, 7)) -> nn.Module:
    """A QuartzNet-like 1-D net (Kriman et al. 2020), tiny: strided prologue, residual blocks of
    separable sub-blocks (the last one's ReLU after the addition of a 1×1 Conv + BatchNorm skip),
    a dilated epilogue and a 1×1 output layer. (B, n_in, T) → (B, n_out, ⌈T/2⌉)."""
    torch.manual_seed(seed)
    blocks: list[nn.Module] = [nn.Conv1d(n_in, c, 5, stride=2, padding=2, bias=bias), nn.BatchNorm1d(c), nn.ReLU()]
    for k in kernels:
        main = []
        for r in range(repeats):
            main += separable(c, c, k, relu=r < repeats - 1, bias=bias)
        blocks.append(Residual(nn.Sequential(*main), nn.Sequential(nn.Conv1d(c, c, 1, bias=bias), nn.BatchNorm1d(c))))
    blocks += [*separable(c, c, 3, dilation=2, bias=bias), nn.Conv1d(c, n_out, 1, bias=True)]
    net = nn.Sequential(*blocks).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def zero_shift_bn(net: nn.Module) -> nn.Module:
    """BatchNorms without shift (running mean and β zero): with bias-free convolutions, a net
    with no biases at all, where LRP-0 equals gradient×input and relevance is conserved."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.zero_()
                m.bias.zero_()
    return net


def resnet2d_net(seed: int = 0, inplace: bool = True, n_classes: int = 4) -> nn.Module:
    """A small 2-D ResNet (He et al. 2016): stem, a basic block with an identity skip, a strided
    block with a 1×1 Conv + BatchNorm skip, global average pooling, a linear head. (B, 1, 8, 8) → (B, 4)."""
    torch.manual_seed(seed)

    def basic(c_in, c_out, stride):
        main = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=inplace), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        skip = nn.Identity() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        return Residual(main, skip, inplace)

    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(inplace=inplace),
                        basic(6, 6, 1), basic(6, 8, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, n_classes)).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def padded_net(seed: int = 0) -> nn.Module:
    """A chain with a BatchNorm that follows no convolution (on the input), explicit padding layers,
    dilation, a grouped convolution and 'same' padding with an even kernel."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.BatchNorm1d(6), nn.ConstantPad1d((3, 1), 0.0), nn.Conv1d(6, 8, 5, dilation=1), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 3, dilation=2, padding=2, groups=2), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Conv1d(8, 8, 4, padding="same", bias=False), nn.ReLU(), nn.Dropout(0.1),
        nn.Conv1d(8, 5, 1),
    ).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def bias_free(net: nn.Module) -> nn.Module:
    """Every bias zeroed (convolutions, linear layers, BatchNorm shifts)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    return zero_shift_bn(net)


class FunctionalResidual(nn.Module):
    """A residual block written with functional ReLUs and an in-place addition (as many users do)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(6, 8, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm1d(8)
        self.head = nn.Conv1d(8, 5, 1)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(h))
        out += h
        return self.head(torch.nn.functional.relu(out, inplace=True))


def functional_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = FunctionalResidual().double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))


def separable2d_net(seed: int = 0) -> nn.Module:
    """2-D: 'same' padding, a residual block of a depthwise (grouped) and a pointwise Conv2d, average
    pooling, Flatten, Linear. (B, 1, 8, 8) → (B, 3)."""
    torch.manual_seed(seed)
    main = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6))
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.BatchNorm2d(4), nn.ReLU(),
                        Residual(main, nn.Sequential(nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6))),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).double()
    return _randomize_bn(net, torch.Generator().manual_seed(seed))
