"""The sanity checks on Whisper: its teacher-forced tokens, randomized down from the decoder.

Each example is the middle token of an utterance's transcript (`models.whisper_text`), explained
over the log-Mel frames of its speech with the padding to 30 s held (`SpeechTokens`, as the
explanation table does). The randomized model is the encoder and decoder together (`WhisperTokens`
on the log-Mel); its layers are coarse blocks, cascading from the decoder's output down to the
encoder's first convolution (a randomization per linear layer would take hundreds of steps).
"""

from __future__ import annotations

import torch
from torch import nn

from ..corpus.load import load_features
from ..models.description import ModelDescription, default_cam_layer
from ..models.whisper_frontend import SpeechTokens, WhisperTokens, speech_tokens, teacher_forced
from ..models.whisper_text import english_tokenizer, transcript_tokens, transcript_words
from .check import Case


def whisper_layers(scorer: WhisperTokens) -> list[str]:
    """The blocks randomized, input to output: the encoder's convolutions, blocks and final norm,
    the decoder's token embedding, blocks and final norm."""
    enc, dec = scorer.encoder, scorer.decoder
    return (["encoder.conv1", "encoder.conv2"] + [f"encoder.blocks.{i}" for i in range(len(enc.blocks))]
            + ["encoder.ln_post", "decoder.token_embedding"] + [f"decoder.blocks.{i}" for i in range(len(dec.blocks))]
            + ["decoder.ln"])


def whisper_case(desc: ModelDescription, utts: list, on_error=None) -> Case:
    """The speech case of Whisper's encoder, one example per utterance (see the module docstring)."""
    scorer = teacher_forced(desc.module)
    base = WhisperTokens(scorer, mel=True)  # the same modules, on the log-Mel
    base.training = False
    tok = english_tokenizer()
    inputs, targets, bound = [], [], []
    for u, f in load_features(utts, desc.features, on_error=on_error):
        try:
            tt = transcript_tokens(transcript_words(u)[1], tok)
        except ValueError as e:
            if on_error is None:
                raise
            on_error(u, e)
            continue
        x = torch.as_tensor(f, dtype=torch.float32).unsqueeze(0)
        model, mel = speech_tokens(scorer, x, tt.tokens)
        mid = len(tt.ids) // 2
        inputs.append(mel)
        targets.append((int(tt.ids[mid]), int(tt.rows[mid])))
        bound.append((model.tokens, model.padding))
    if not inputs:
        raise ValueError("no utterance gave a transcript to teacher-force")
    stacked = torch.cat([x[0] for x in inputs], dim=1)
    context = {"layer": default_cam_layer(desc), "low": stacked.min(1).values[:, None], "high": stacked.max(1).values[:, None]}

    def bind(net: nn.Module, i: int) -> nn.Module:
        return SpeechTokens(net, *bound[i])
    return Case("speech", base, inputs, targets, lambda m: m[0].detach().double().numpy(), context,
                layers=whisper_layers(base), bind=bind)
