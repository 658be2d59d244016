"""A Hugging Face ``Wav2Vec2ForCTC`` built from a small config with seeded random weights (no hub),
as a user would hand it to introspeech: ``Scores(model, time_axis=1, waveform=True)``."""

from __future__ import annotations

import torch

from introspeech.attribution import Scores


def wav2vec2_model(attention: str = "eager", seed: int = 0):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    cfg = Wav2Vec2Config(vocab_size=29, pad_token_id=28, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(8, 8, 8), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                         num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, feat_extract_norm="group",
                         do_stable_layer_norm=False, hidden_dropout=0.0, attention_dropout=0.0,
                         activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
                         mask_time_prob=0.0, attn_implementation=attention)
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # norms and biases away from their initial values, as after training
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "norm" in name:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.2)
    return model


def wav2vec2() -> Scores:
    """For ``--model-factory tests.hf_models:wav2vec2 --features waveform`` (frames every 5 ms)."""
    return Scores(wav2vec2_model(), time_axis=1, waveform=True)
