"""Whisper as analyses read it: waveform in, its own log-Mel front end as layers, padding to 30 s.

`WhisperFrontEnd` computes openai-whisper's ``log_mel_spectrogram(audio, padding=...)`` for 30 s
windows: zeros appended to 480,000 samples, the STFT (n_fft 400, hop 160, periodic Hann window,
reflect padding) as two Conv1d, power, the 80 Mel filters of openai-whisper's assets as a 1×1
Conv1d, log10 of at least 1e-10, a floor 8 below each utterance's maximum, then ``(x + 4) / 4``.
`WhisperEncoder` adds the encoder: ``(batch, 1, samples)`` → ``(batch, 1500, 384)``, one frame
per 20 ms. `WhisperTokens` adds the decoder, teacher-forced on given tokens: ``(batch, tokens,
51864)`` scores, one row per token, every token explained in one pass (`attribution.Scores`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .hama import FrontEnd

SAMPLES = 480_000  # 30 s at 16 kHz: Whisper reads nothing shorter
N_FFT, HOP = 400, 160
FRAME_S = 0.02  # one encoder frame per 20 ms
FRAMES = 1500


def mel_filters() -> torch.Tensor:
    """openai-whisper's 80 Mel filters ``(80, 201)`` (its ``assets/mel_filters.npz``)."""
    from importlib import resources

    with np.load(str(resources.files("whisper").joinpath("assets", "mel_filters.npz"))) as f:
        return torch.from_numpy(f["mel_80"].astype(np.float32))


class WhisperFrontEnd(nn.Module):
    """``(batch, 1, samples)`` (at most 30 s at 16 kHz) → Whisper's log-Mel ``(batch, 80, 3000)``."""

    def __init__(self, filters: torch.Tensor | None = None):
        super().__init__()
        filters = mel_filters() if filters is None else filters
        n = torch.arange(N_FFT, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / N_FFT)  # periodic Hann, as torch.hann_window
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        real = (window * torch.cos(2 * math.pi * k * n / N_FFT)).float()[:, None, :]
        imag = (-window * torch.sin(2 * math.pi * k * n / N_FFT)).float()[:, None, :]
        # the right padding is 40, not 200: frames end at 3000, where openai-whisper drops the last
        self.stft = FrontEnd(real, imag, filters.T, pad=(N_FFT // 2, N_FFT // 2 - HOP))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"Whisper takes (batch, 1, samples) at 16 kHz, got {tuple(x.shape)}")
        if x.shape[-1] > SAMPLES:
            raise ValueError(f"Whisper reads at most 30 s ({SAMPLES} samples) at once, got {x.shape[-1]}; "
                             "cut the recording")
        x = nn.functional.pad(x, (0, SAMPLES - x.shape[-1]))
        log10 = self.stft(x) / math.log(10.0)
        floor = log10.amax(dim=(1, 2), keepdim=True) - 8.0
        return (torch.maximum(log10, floor) + 4.0) / 4.0


class WhisperEncoder(nn.Module):
    """``(batch, 1, samples)`` → the encoder's output ``(batch, 1500, 384)`` (20 ms frames)."""

    def __init__(self, whisper: nn.Module):
        super().__init__()
        self.front = WhisperFrontEnd()
        self.encoder = whisper.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.front(x))


class WhisperTokens(nn.Module):
    """``(batch, 1, samples)`` and ``tokens (batch, n)`` → the decoder's scores ``(batch, n, vocab)``,
    teacher-forced: row i scores the token after ``tokens[:, :i + 1]``.

    ``mel=True``: the input is the front end's log-Mel ``(batch, 80, 3000)`` instead (maps over
    Mel bands and 10 ms frames; LRP needs it: the front end's floor below each utterance's
    maximum has no relevance rule, and LRP through the waveform front end is refused)."""

    def __init__(self, whisper: nn.Module, mel: bool = False):
        super().__init__()
        self.front = nn.Identity() if mel else WhisperFrontEnd()
        self.encoder = whisper.encoder
        self.decoder = whisper.decoder

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, self.encoder(self.front(x)))


def teacher_forced(encoder: WhisperEncoder) -> WhisperTokens:
    """The decoder of the packaged Whisper (read again from its wheel), teacher-forced on top of
    ``encoder``'s own front end and encoder modules: hooks on ``encoder``'s layers act on its scores.
    ``encoder`` itself is not changed."""
    from .whisper import load_whisper

    tokens = WhisperTokens(load_whisper())
    tokens.front, tokens.encoder = encoder.front, encoder.encoder
    tokens.training = False
    tokens.decoder.eval()  # the shared modules keep their own modes
    return tokens


def greedy_text(encoder: WhisperEncoder):
    """``x (1, 1, samples)`` → Whisper's greedy transcript (openai-whisper's ``decode`` at temperature
    0, no timestamps), through ``encoder``'s own front end and encoder modules, so hooks on its
    layers act on the text; the decoder is the packaged one, read again. ``encoder`` is not changed."""
    import whisper

    from .whisper import load_whisper

    model = load_whisper()
    model.encoder = encoder.encoder
    options = whisper.DecodingOptions(language="en", temperature=0.0, without_timestamps=True, fp16=False)

    def run(x: torch.Tensor) -> str:
        with torch.no_grad():
            return whisper.decode(model, encoder.front(x)[0], options).text.strip()
    return run


def frames_of(samples: int) -> int:
    """How many encoder frames hold speech of ``samples`` samples; the rest of the 1500 are padding."""
    return min(FRAMES, math.ceil(samples / (HOP * 2)))


class SpeechTokens(nn.Module):
    """One transcript's teacher-forced scores ``(batch, vocab, tokens)`` from the log-Mel frames of
    speech only ``(batch, 80, n)``: the frames past the speech keep the utterance's own values (its
    padding to 30 s, held fixed), so maps and perturbations cover the speech and nothing else. Each
    text token is an output frame (channels first, as a CTC model's scores), every token explained
    from one shared encoder pass. ``scorer``: a `WhisperTokens` whose modules it shares."""

    def __init__(self, scorer: WhisperTokens, tokens: torch.Tensor, padding: torch.Tensor):
        super().__init__()
        self.encoder, self.decoder = scorer.encoder, scorer.decoder
        self.training = False
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("padding", padding, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1] + self.padding.shape[-1]
        if x.dim() != 3 or n != SAMPLES // HOP:
            raise ValueError(f"SpeechTokens takes the {SAMPLES // HOP - self.padding.shape[-1]} log-Mel frames of its "
                             f"utterance's speech (batch, 80, frames), got {tuple(x.shape)}")
        b = x.shape[0]
        mel = torch.cat([x, self.padding.expand(b, -1, -1)], dim=-1)
        return self.decoder(self.tokens.expand(b, -1), self.encoder(mel)).transpose(1, 2)


def speech_tokens(scorer: WhisperTokens, x: torch.Tensor, tokens: torch.Tensor) -> tuple[SpeechTokens, torch.Tensor]:
    """`SpeechTokens` of waveform ``x`` ``(1, 1, samples)`` and its log-Mel frames of speech
    ``(1, 80, ceil(samples / 160))``."""
    with torch.no_grad():
        mel = scorer.front(x)
    n = min(mel.shape[-1], math.ceil(x.shape[-1] / HOP))
    return SpeechTokens(scorer, tokens, mel[..., n:].clone()), mel[..., :n].clone()
