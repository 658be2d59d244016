"""One utterance's contribution to the accumulators (see accumulators.py for the array names).

Per utterance: one forward pass with the hooks, the letter alignment (CTC Viterbi or greedy path)
and the phone table as arrays, labels and occurrence frames once per distinct layer geometry, then
one compiled call per layer that reads the activations where the model left them (kernels.py).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from numba import njit
from torch import nn

from ..asr.decode import forced_align_arrays, greedy_runs
from ..asr.model import Geometry
from ..attribution.cone import NotCone, Recording, record, reusing
from ..chunking import owned_exactly, pieces, run_in_pieces
from ..corpus.utterance import Utterance
from ..errors import InputError
from ..text import BLANK, normalize_text
from .accumulators import add_total
from .alignment import align_emissions
from .capture import Capture
from .kernels import Labelling, accumulate_layer, add_windows, frame_targets
from .labels import layer_frame, map_letters, map_phone_table, phone_table
from .settings import KINDS, Layout, ProfileSettings


def letter_runs(scores: torch.Tensor, text: str, source: str, layout: Layout | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Letters on output frames as arrays (output index, first, last frame): forced alignment of
    ``text`` or the greedy CTC path, in the alphabet of ``layout`` (default: the built-in one)."""
    blank = BLANK if layout is None else layout.blank
    if source == "prediction":
        return greedy_runs(scores.argmax(dim=0).numpy(), blank)
    # Raw scores: log-softmax subtracts one constant per frame, the same for every path, so the
    # Viterbi path is that of the log-probabilities (and this runs once per utterance).
    return forced_align_arrays(scores.numpy(), text if layout is None else layout.encode(text), blank)


@njit(cache=True, nogil=True)
def run_labels(symbol: np.ndarray, first: np.ndarray, last: np.ndarray, n: int) -> np.ndarray:
    """Group index per frame (-1: none) from runs ``[first, last]`` of ``symbol``."""
    lab = np.full(n, -1, dtype=np.int64)
    for i in range(symbol.shape[0]):
        lab[first[i]:last[i] + 1] = symbol[i]
    return lab


class Kind:
    """One labelling of an utterance: letters on output frames, or phones in seconds."""

    def __init__(self, groups: np.ndarray, centre: np.ndarray, label_at, symbols: np.ndarray | None = None):
        self.groups, self.centre, self.label_at = groups, centre, label_at
        self.symbols = groups if symbols is None else symbols  # letters: output indices of the groups


def utterance_kinds(layout: Layout, s: ProfileSettings, utt: Utterance, scores: torch.Tensor,
                    frame_rate: float, duration: float) -> dict[str, Kind]:
    """The utterance's labellings the settings ask for: letters (forced alignment of the reference
    or the greedy path of ``scores``) and phonemes (the corpus alignment, when it has one)."""
    kinds = {}
    if "letters" in s.groups:
        try:
            sym, first, last = letter_runs(scores, normalize_text(utt.text).text, s.letters_from, layout)
        except ValueError as e:  # a transcript the alphabet cannot spell, or longer than the frames allow
            raise InputError(utt.audio_path or utt.id, f"utterance {utt.id}: {e}") from None
        groups = layout.letter_groups(sym)
        out_lab = run_labels(groups, first, last, scores.shape[1])
        kinds["letters"] = Kind(groups, layout.output.centre((first + last) // 2),
                                lambda geo, n: map_letters(out_lab, layout.output, geo, n), sym)
    if "phonemes" in s.groups and utt.phones:
        utt.check_alignment(duration)  # an alignment of other audio (or a TextGrid of another file) is an error
        table = phone_table(utt.phones)
        ok = table[2] >= 0
        kinds["phonemes"] = Kind(table[2][ok], 0.5 * (table[0][ok] + table[1][ok]) * frame_rate,
                                 lambda geo, n: map_phone_table(table, geo, n, frame_rate))
    return kinds


_EMPTY = np.zeros(0, dtype=np.int64)
_NOWHERE = (np.zeros((1, 1)), np.zeros(1), np.zeros(1))  # sums, sumsq, counts nobody reads
_NO_WINDOWS = (np.zeros((1, 1, 1)), np.zeros((1, 1)))


def _kernel_accumulators(acc: dict, name: str, kind: str) -> tuple[tuple, tuple]:
    """The NAP and window arrays the layer kernel writes for one layer and labelling
    (placeholders when the settings do not accumulate them)."""
    key = f"nap/{name}/{kind}"
    nap = (acc[f"{key}/sum"], acc[f"{key}/sumsq"], acc[f"{key}/count"]) if f"{key}/sum" in acc else _NOWHERE
    win = (acc[f"w{key}/sum"], acc[f"w{key}/count"]) if f"w{key}/sum" in acc else _NO_WINDOWS
    return nap, win


def _frame_labels(kind: Kind | None, geo: Geometry, n: int, half: int) -> tuple[np.ndarray, tuple]:
    """One labelling on a layer's ``n`` frames: label per frame (-1: none) and the window targets."""
    if kind is None or not half:
        targets = (np.zeros(n + 1, dtype=np.int64), _EMPTY, _EMPTY)  # no frame feeds a window
    else:
        targets = frame_targets(kind.groups, layer_frame(geo, kind.centre), half, n)
    return (np.full(n, -1, dtype=np.int64) if kind is None else kind.label_at(geo, n)), targets


def layer_labellings(acc: dict, layout: Layout, s: ProfileSettings, kinds: dict[str, Kind],
                     lengths: dict[str, int]) -> dict[str, list[Labelling]]:
    """Per layer (of ``lengths[layer]`` frames), the kernel's arguments for both labellings: frame
    labels and window targets (computed once per distinct frame geometry) and the accumulators."""
    per_geometry: dict = {}  # labels and window targets, shared by layers whose frames sit at the same places
    labellings: dict[str, list[Labelling]] = {}
    for name, geo in zip(layout.layers, layout.geometry):
        n = lengths[name]
        key = (geo.centre(0), geo.stride, n)
        if key not in per_geometry:
            per_geometry[key] = [_frame_labels(kinds.get(k), geo, n, s.nap_window) for k in KINDS]
        labellings[name] = []
        for kind, (labels, targets) in zip(KINDS, per_geometry[key]):
            nap, win = _kernel_accumulators(acc, name, kind)
            labellings[name].append(Labelling(labels, *nap, *targets, *win))
    return labellings


def _windows(acc: dict, key: str, a: np.ndarray, groups: np.ndarray, frames: np.ndarray, half: int) -> None:
    """Windowed sums of ``a`` ``(time, channels)`` around occurrences into ``acc[key/…]``."""
    if groups.size:
        add_windows(acc[f"{key}/sum"], acc[f"{key}/count"], a, *frame_targets(groups, frames, half, a.shape[0]))


def accumulate_utterance(acc: dict, model: nn.Module, layout: Layout, s: ProfileSettings, utt: Utterance,
                         feats: np.ndarray, frame_rate: float, hooks: Capture | None = None) -> None:
    """Add one utterance (normalized features ``(n_mels, time)``) to the accumulators ``acc``;
    ``hooks``: a `Capture` already registered on ``model`` (else one is made for this call).

    An utterance longer than ``s.max_frames`` runs in overlapping pieces (`introspeech.chunking`):
    a first pass gives the scores (and checks the model may run in pieces), a second adds each
    layer's frames from the piece that owns them, in frame order, so the sums are those of the
    whole run while memory stays that of a piece."""
    if hooks is None:
        with Capture(model, layout) as cap:
            return accumulate_utterance(acc, model, layout, s, utt, feats, frame_rate, cap)
    x = torch.as_tensor(feats, dtype=next(model.parameters()).dtype).unsqueeze(0)
    parts = pieces(x.shape[-1], layout.geometry, s.max_frames if layout.local else 0)  # attention: always whole
    try:  # the forward pass comes before any sum, so a failure leaves the accumulators as they were
        recording = None
        if len(parts) == 1:
            recording = _recorded_forward(model, x, hooks) if s.relevance and not s.gradient_adjusted else None
            acts, out = (hooks.acts, recording[2]) if recording else hooks(x, keep_graph=s.gradient_adjusted)
            lengths = {name: acts[name].shape[-1] for name in layout.layers}
            if not layout.local:  # frames of padding the model added (Whisper's 30 s) are in no statistic
                lengths = {name: min(n, geo.frames_within(x.shape[-1]))
                           for (name, n), geo in zip(lengths.items(), layout.geometry)}
        else:
            if s.gradient_adjusted:
                raise InputError(utt.audio_path or utt.id, f"gradient-adjusted NAPs need the whole utterance's graph: "
                                                           f"{x.shape[-1]} frames > max_frames={s.max_frames}")
            acts, seen = None, []
            with torch.no_grad():
                out = run_in_pieces(lambda xp: hooks(xp)[1], x, layout.output, s.max_frames,
                                    on_piece=lambda p, _o: seen.append(
                                        (p, {n: hooks.acts[n].shape[-1] for n in layout.layers})))
            last, n_local = seen[-1]
            lengths = {name: last.start // geo.stride + n_local[name] for name, geo in zip(layout.layers, layout.geometry)}
    except (RuntimeError, ValueError) as e:  # e.g. an unpadded model on an input shorter than its receptive field
        raise InputError(utt.audio_path or utt.id, f"the model cannot run on these {x.shape[-1]} frames "
                                                   f"({str(e).splitlines()[0]})") from None
    scores = out[0].detach()
    rows = np.ascontiguousarray(feats.T, dtype=np.float32)  # (time, mel)
    kinds = utterance_kinds(layout, s, utt, scores, frame_rate, feats.shape[1] / frame_rate)
    labellings = layer_labellings(acc, layout, s, kinds, lengths)
    time_major: dict[str, np.ndarray] = {}
    if acts is not None:
        for name in layout.layers:
            a = time_major[name] = np.ascontiguousarray(acts[name][0, :, :lengths[name]].detach().numpy().T)  # (time, ch)
            accumulate_layer(a, *labellings[name])
    else:
        _accumulate_pieces(hooks, layout, x, parts, labellings)
    for kind, v in kinds.items():
        add_total(acc, kind, len(v.groups))
    if "letters" in kinds and s.gradient_adjusted and len(kinds["letters"].groups):
        _adjusted(acc, layout, s, hooks.raw, time_major, out, kinds["letters"], kinds["letters"].centre)
    add_patterns(acc, model, layout, s, kinds, x, scores, rows, recording)
    add_total(acc, "utterances", 1)
    add_total(acc, "input_frames", feats.shape[1])


def _recorded_forward(model: nn.Module, x: torch.Tensor, hooks: Capture) -> Recording | None:
    """One forward pass that fills the hooks and records the graph the relevance alignment's cone
    engine reads (`attribution.cone.reusing`), so the alignment needs no forward pass of its own;
    None where that engine cannot follow the model (then the plain pass runs)."""
    held: list[Recording] = []

    def recorded(inp: torch.Tensor) -> torch.Tensor:
        held.append(record(model, inp))
        return held[0][2]

    try:
        hooks(x, forward=recorded)
    except NotCone:
        return None
    return held[0]


def _slice(lab: Labelling, a: int, b: int) -> Labelling:
    """A labelling's frames ``[a, b)`` (the window targets index the same arrays)."""
    return lab._replace(labels=lab.labels[a:b], ptr=lab.ptr[a:b + 1])


def _accumulate_pieces(hooks: Capture, layout: Layout, x: torch.Tensor, parts: list, labellings: dict) -> None:
    """The second pass over a long utterance: each layer's frames from the piece that owns them."""
    end = dict.fromkeys(layout.layers, 0)
    with torch.no_grad():
        for piece in parts:
            acts, _ = hooks(x[..., piece.start:piece.stop])
            for name, geo in zip(layout.layers, layout.geometry):
                act = acts[name][0]
                a, b, local = owned_exactly(piece, geo, act.shape[-1], end[name])
                end[name] = b
                if b > a:
                    rows = np.ascontiguousarray(act[:, local:local + b - a].numpy().T)
                    accumulate_layer(rows, *(_slice(lab, a, b) for lab in labellings[name]))


def add_patterns(acc: dict, model: nn.Module, layout: Layout, s: ProfileSettings, kinds: dict[str, Kind],
                 x: torch.Tensor, scores: torch.Tensor, rows: np.ndarray, recording: Recording | None = None) -> None:
    """The input windows of an utterance (features ``rows`` ``(time, mel)``): around each phone of
    the corpus alignment, and around each emitted letter (``recording``: the profile pass's, which
    the relevance alignment then reuses)."""
    if "phonemes" in kinds:
        v = kinds["phonemes"]
        _windows(acc, "pattern/phonemes/aligned", rows, v.groups, np.rint(v.centre).astype(np.int64), s.pattern_window)
    if "letters" in kinds:
        with reusing(model, x, recording) if recording else contextlib.nullcontext():
            _letter_patterns(acc, model, layout, s, x, scores, rows)


def _letter_patterns(acc, model, layout: Layout, s: ProfileSettings, x, scores, rows) -> None:
    """Input windows around each emitted letter: at the nominal position of its output frame, and
    at the position its relevance points to."""
    em = align_emissions(model, x, scores, layout.output, s.relevance, s.align_by, s.max_frames, layout.blank,
                         local=layout.local)
    if not len(em):
        return
    groups = layout.letter_groups(em.symbol)
    _windows(acc, "pattern/letters/nominal", rows, groups, em.nominal, s.pattern_window)
    if s.relevance:
        _windows(acc, "pattern/letters/aligned", rows, groups, em.aligned, s.pattern_window)
        half = layout.shift_bins()
        shift = np.clip(em.aligned - em.nominal, -half, half) + half
        acc["shift/hist"] += np.bincount(shift, minlength=2 * half + 1)


def _adjusted(acc, layout: Layout, s: ProfileSettings, acts, time_major, out, letters: Kind,
              centre: np.ndarray) -> None:
    """Gradient-adjusted windowed NAPs: each letter occurrence's window is centred, per layer, on the
    frame where the mean |∂score/∂activation| over channels is largest."""
    groups = letters.groups
    t_out = layer_frame(layout.output, centre).clip(0, out.shape[2] - 1)
    seeds = torch.zeros((len(groups),) + tuple(out.shape), dtype=out.dtype)
    seeds[torch.arange(len(groups)), 0, torch.as_tensor(letters.symbols), torch.as_tensor(t_out)] = 1.0
    tensors = [acts[name] for name in layout.layers]
    grads = torch.autograd.grad(out, tensors, grad_outputs=seeds, is_grads_batched=True, retain_graph=False)
    for name, g, axis in zip(layout.layers, grads, layout.time_axes):
        g = g if axis == -1 else g.transpose(2, 3)  # (n_occ, batch, channels, time)
        frames = g[:, 0].abs().mean(1).argmax(-1).numpy()  # (n_occ,)
        _windows(acc, f"anap/{name}/letters", time_major[name], groups, frames, s.nap_window)
