"""A QuartzNet-style recognizer written from its paper (Kriman et al. 2020, "QuartzNet: deep
automatic speech recognition with 1D time-channel separable convolutions"), for introspeech's
"your own model" examples and benchmarks. It is a user's model: introspeech does not import it.

QuartzNet B×R: a strided prologue C1, B blocks of R sub-blocks (depthwise Conv1d over time,
pointwise Conv1d over channels, BatchNorm, ReLU), each block with a residual connection (a 1×1
Conv1d + BatchNorm of the block input added before the last sub-block's ReLU), then C2 (a dilated
separable convolution), C3 (1×1) and C4 (1×1 to the letters, with bias). Scores are logits
``(batch, n_symbols, ⌈T/2⌉)`` for CTC.

    from examples.quartznet import quartznet
    model = quartznet("tiny")            # also: introspeech ... --model-factory examples.quartznet:quartznet
"""

from __future__ import annotations

from torch import nn

PRESETS = {
    # (channels, kernels per block, repeats R, C1 kernel, C2 kernel, C3 channels)
    "tiny": (64, (9, 13, 17), 2, 11, 15, 128),
    "micro": (16, (5, 7), 2, 5, 5, 32),
}


def separable(c_in: int, c_out: int, kernel: int, dilation: int = 1, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    """Depthwise (time) + pointwise (channels) convolution, BatchNorm, ReLU."""
    pad = dilation * (kernel - 1) // 2
    parts: list[nn.Module] = [
        nn.Conv1d(c_in, c_in, kernel, stride=stride, padding=pad, dilation=dilation, groups=c_in, bias=False),
        nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)]
    return parts + [nn.ReLU()] if relu else parts


class Block(nn.Module):
    """R separable sub-blocks; the block input, through a 1×1 Conv1d + BatchNorm, is added before the last ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, repeats: int):
        super().__init__()
        layers: list[nn.Module] = []
        for r in range(repeats):
            layers += separable(c_in if r == 0 else c_out, c_out, kernel, relu=r < repeats - 1)
        self.body = nn.Sequential(*layers)
        self.residual = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.residual(x))


class QuartzNet(nn.Module):
    def __init__(self, n_mels: int = 40, n_symbols: int = 29, preset: str = "tiny"):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown QuartzNet preset {preset!r}; choose from {sorted(PRESETS)}")
        c, kernels, repeats, k1, k2, c3 = PRESETS[preset]
        self.prologue = nn.Sequential(*separable(n_mels, c, k1, stride=2))
        self.blocks = nn.Sequential(*[Block(c, c, k, repeats) for k in kernels])
        self.epilogue = nn.Sequential(*separable(c, c3, k2, dilation=2), nn.Conv1d(c3, c3, 1, bias=False),
                                      nn.BatchNorm1d(c3), nn.ReLU())
        self.output = nn.Conv1d(c3, n_symbols, 1)

    def forward(self, x):
        return self.output(self.epilogue(self.blocks(self.prologue(x))))


def quartznet(preset: str = "tiny", n_mels: int = 40, n_symbols: int = 29) -> QuartzNet:
    """The factory ``--model-factory examples.quartznet:quartznet`` calls."""
    return QuartzNet(n_mels, n_symbols, preset)


def micro() -> nn.Module:
    """The smallest preset (tests)."""
    return quartznet("micro")
