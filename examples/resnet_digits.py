"""A small 2-D ResNet (He et al. 2016) for scikit-learn's 8×8 digits, for introspeech's "your own
model" examples: a user's model, which introspeech does not import.

A stem (3×3 Conv2d, BatchNorm, ReLU), a basic block with an identity skip, a strided basic block
with a 1×1 Conv2d + BatchNorm skip, global average pooling and a linear head over 10 classes.

    python examples/resnet_digits.py --out work/resnet_digits     # trains in seconds, writes model.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        out += self.skip(x)
        return self.relu2(out)


class ResNetDigits(nn.Module):
    def __init__(self, width: int = 16, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layer2(self.layer1(self.stem(x))))))


def resnet(width: int = 16) -> ResNetDigits:
    """The factory ``--model-factory examples.resnet_digits:resnet`` calls."""
    return ResNetDigits(width)


def main() -> None:
    from safetensors.torch import save_file

    from introspeech.sanity.digits import accuracy, digits, train_digits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=25)
    args = ap.parse_args()
    xtr, ytr, xte, yte = digits(0)
    model = train_digits(xtr, ytr, args.epochs, 0, make=resnet)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.out / "model.safetensors"))
    print(f"test accuracy {accuracy(model, xte, yte):.3f}; weights: {args.out / 'model.safetensors'}")


if __name__ == "__main__":
    main()
