"""Inference and evaluation: transcripts, CER/WER per split (jiwer)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..audio import FeatureConfig
from ..chunking import MAX_FRAMES, local_geometry, run_in_pieces
from ..corpus.load import utterance_features
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..text import normalize_text
from .beam import BeamDecoder
from .decode import greedy_decode
from .model import Wav2Letter


@torch.no_grad()
def scores(model: Wav2Letter, feats: np.ndarray | torch.Tensor, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """Letter scores ``(n_symbols, frames)`` of one utterance's features ``(n_mels, time)``.

    One utterance at a time: batching with padding would change the frames near the end. Inputs
    longer than ``max_frames`` run in overlapping pieces (`introspeech.chunking`: the same scores,
    memory bounded by the piece length; 0: always whole)."""
    p = next(model.parameters())
    x = torch.as_tensor(feats, dtype=p.dtype, device=p.device).unsqueeze(0)
    was = model.training
    model.eval()
    try:
        geo = local_geometry(model, x) if max_frames and x.shape[-1] > max_frames else None
        if geo is not None:
            return run_in_pieces(model, x, geo, max_frames)[0].cpu()
        return model(x)[0].cpu()  # short, or a model without locality: whole
    except RuntimeError as e:  # e.g. an unpadded model on an input shorter than its receptive field
        raise InputError("input", f"the model cannot run on these {x.shape[-1]} frames ({str(e).splitlines()[0]})") \
            from None
    finally:
        model.train(was)


def transcribe(model: Wav2Letter, feats: np.ndarray | torch.Tensor, max_frames: int = MAX_FRAMES,
               decode: Callable[[np.ndarray], str] | None = None, beam: BeamDecoder | None = None) -> str:
    """CTC transcript of one utterance (long ones in pieces, see `scores`): greedy, or the prefix
    beam search ``beam`` (built-in alphabet only); ``decode`` maps the best symbol per frame to
    text for another alphabet (`models.Output.decode`)."""
    return decode_scores(scores(model, feats, max_frames), decode, beam)


def decode_scores(s: torch.Tensor, decode: Callable[[np.ndarray], str] | None = None,
                  beam: BeamDecoder | None = None) -> str:
    """The transcript of one utterance's scores ``(n_symbols, frames)`` (see `transcribe`)."""
    if beam is not None:
        if decode is not None:
            raise ValueError("beam search reads the built-in alphabet; this model has its own")
        return beam.decode(torch.log_softmax(s.double(), dim=0).T.numpy())
    return greedy_decode(s.unsqueeze(0))[0] if decode is None else decode(s.numpy())


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus-level CER and WER (jiwer), empty hypotheses allowed."""
    import jiwer

    if not refs:
        return {"cer": float("nan"), "wer": float("nan"), "utterances": 0}
    return {"cer": float(jiwer.cer(refs, hyps)), "wer": float(jiwer.wer(refs, hyps)), "utterances": len(refs)}


def evaluate_split(model: Wav2Letter, cfg: FeatureConfig, utts: Iterable[Utterance],
                   on_error: Callable[[Utterance, Exception], None] | None = None,
                   progress: Callable[[int], None] | None = None,
                   decode: Callable[[np.ndarray], str] | None = None,
                   beam: BeamDecoder | None = None) -> tuple[dict, list[dict]]:
    """CER/WER of a split and per-utterance results; unreadable files are reported and skipped
    (``decode``, ``beam``: see `transcribe`)."""
    return evaluate_decoders(model, cfg, utts, {"": beam}, on_error, progress, decode)[""]


def evaluate_decoders(model: Wav2Letter, cfg: FeatureConfig, utts: Iterable[Utterance],
                      beams: dict[str, BeamDecoder | None], on_error: Callable[[Utterance, Exception], None] | None = None,
                      progress: Callable[[int], None] | None = None,
                      decode: Callable[[np.ndarray], str] | None = None) -> dict[str, tuple[dict, list[dict]]]:
    """`evaluate_split` for several decoders at once (None: greedy), one forward pass per utterance."""
    refs: list[str] = []
    hyps: dict[str, list[str]] = {name: [] for name in beams}
    rows: dict[str, list[dict]] = {name: [] for name in beams}
    for k, u in enumerate(utts):
        ref = normalize_text(u.text).text
        if not ref:
            if on_error:
                on_error(u, InputError(u.audio_path, f"utterance {u.id} has an empty transcript"))
            continue
        try:
            s = scores(model, utterance_features(u, cfg))
        except InputError as e:
            if e.source == "input":  # name the utterance's file
                e = InputError(u.audio_path or u.id, str(e).removeprefix("input: "))
            if on_error is None:
                raise e from None
            on_error(u, e)
            continue
        refs.append(ref)
        for name, beam in beams.items():
            hyp = decode_scores(s, decode, beam)
            hyps[name].append(hyp)
            rows[name].append({"id": u.id, "reference": ref, "hypothesis": hyp, "speaker": u.speaker})
        if progress:
            progress(k + 1)
    return {name: (error_rates(refs, hyps[name]), rows[name]) for name in beams}


def evaluate_phonemes(model, cfg: FeatureConfig, utts: Iterable[Utterance], output,
                      on_error: Callable[[Utterance, Exception], None] | None = None) -> tuple[dict, list[dict]]:
    """Phone error rate of a phoneme recognizer (``output``: its `models.Output`) against the
    corpus' phone alignments: its greedy IPA tokens mapped to ARPAbet (`text.IPA_TO_ARPABET`),
    silences left out of the reference; utterances without an alignment are reported and skipped."""
    import jiwer

    refs, hyps, rows = [], [], []
    for u in utts:
        ref = [p.label for p in (u.phones or []) if p.label not in ("sil", "sp", "spn", "")]
        if not ref:
            if on_error:
                on_error(u, InputError(u.audio_path or u.id, f"utterance {u.id} has no phone alignment"))
            continue
        try:
            s = scores(model, utterance_features(u, cfg))
        except InputError as e:
            if on_error is None:
                raise
            on_error(u, e)
            continue
        hyp = output.phones(s.numpy())
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
        rows.append({"id": u.id, "reference": refs[-1], "hypothesis": hyps[-1], "speaker": u.speaker})
    per = float(jiwer.wer(refs, hyps)) if refs else float("nan")
    return {"per": per, "utterances": len(refs)}, rows
