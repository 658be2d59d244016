"""torchaudio's Wav2Letter layout, written from its paper (Collobert et al. 2016, "Wav2Letter: an
end-to-end ConvNet-based speech recognition system"), for introspeech's "your own model" examples:
a user's model, which introspeech does not import.

A stack of Conv1d + ReLU layers without BatchNorm and without padding: a strided first layer, seven
kernel-7 layers, a wide kernel, two 1×1 layers, the last to the letters. Each unpadded layer
shortens the sequence, so the output has T' = ⌊(T − rf) / 2⌋ + 1 frames. torchaudio applies
log-softmax inside ``forward``; here the scores are logits (CTC training applies it), so that every
attribution method explains the scores themselves.

    from examples.wav2letter import wav2letter
    model = wav2letter("tiny")           # also: introspeech ... --model-factory examples.wav2letter:wav2letter
"""

from __future__ import annotations

from torch import nn

PRESETS = {
    # (first channels, first kernel, middle channels, middle layers, wide channels, wide kernel)
    "paper": (250, 48, 250, 7, 2000, 32),
    "tiny": (96, 11, 96, 3, 192, 15),
    "micro": (16, 5, 16, 2, 24, 5),
}


class Wav2LetterCollobert(nn.Module):
    def __init__(self, n_mels: int = 40, n_symbols: int = 29, preset: str = "tiny"):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown Wav2Letter preset {preset!r}; choose from {sorted(PRESETS)}")
        c1, k1, cm, n_mid, cw, kw = PRESETS[preset]
        layers: list[nn.Module] = [nn.Conv1d(n_mels, c1, k1, stride=2), nn.ReLU()]
        for i in range(n_mid):
            layers += [nn.Conv1d(c1 if i == 0 else cm, cm, 7), nn.ReLU()]
        layers += [nn.Conv1d(cm, cw, kw), nn.ReLU(), nn.Conv1d(cw, cw, 1), nn.ReLU(), nn.Conv1d(cw, n_symbols, 1)]
        self.acoustic_model = nn.Sequential(*layers)
        for m in self.acoustic_model:  # He initialization: without BatchNorm the signal must not fade with depth
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.acoustic_model(x)


def wav2letter(preset: str = "tiny", n_mels: int = 40, n_symbols: int = 29) -> Wav2LetterCollobert:
    """The factory ``--model-factory examples.wav2letter:wav2letter`` calls."""
    return Wav2LetterCollobert(n_mels, n_symbols, preset)


def micro() -> nn.Module:
    """The smallest preset (tests)."""
    return wav2letter("micro")
