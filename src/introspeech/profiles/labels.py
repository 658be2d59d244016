"""Which frames of which layer belong to which group (letter or phoneme).

Every layer's frame ``u`` looks at the input through its receptive field; its *centre* (in input
frames, `asr.model.Geometry.centre`) places it in time. Letters live on output frames (forced
alignment of the reference, or the greedy CTC path); a layer frame takes the letter of the output
frame whose centre is nearest to its own. Phonemes live in seconds (the corpus alignment); a layer
frame takes the phone that contains its centre time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..asr.model import Geometry
from ..corpus.utterance import Segment
from ..text import ARPABET, LETTERS, SILENCE, strip_stress

LETTER_GROUPS: tuple[str, ...] = LETTERS
PHONEME_GROUPS: tuple[str, ...] = ARPABET + (SILENCE,)
GROUPS: dict[str, tuple[str, ...]] = {"letters": LETTER_GROUPS, "phonemes": PHONEME_GROUPS}
_PHONE_INDEX = {p: i for i, p in enumerate(PHONEME_GROUPS)}


def group_label(kind: str, name: str) -> str:
    """Printable name of a group (space and apostrophe made visible)."""
    return {" ": "␣", "'": "’"}.get(name, name) if kind == "letters" else name


def layer_frame(geo: Geometry, input_frame: float | np.ndarray) -> np.ndarray:
    """The frame of a layer whose receptive-field centre is nearest to an input frame."""
    return np.rint((np.asarray(input_frame, dtype=np.float64) - geo.centre(0)) / geo.stride).astype(np.int64)


def centres(geo: Geometry, n_frames: int) -> np.ndarray:
    """Receptive-field centres (input frames) of a layer's frames ``0..n_frames-1``."""
    return geo.centre(0) + geo.stride * np.arange(n_frames, dtype=np.float64)


def phone_index(label: str) -> int:
    """Group index of a corpus phone label (stress digits ignored); -1 when it is not ARPAbet/sil."""
    return _PHONE_INDEX.get(label if label == SILENCE else strip_stress(label), -1)


def map_letters(out_labels: np.ndarray, out_geo: Geometry, geo: Geometry, n_frames: int) -> np.ndarray:
    """Letters of a layer's frames: those of the output frame with the nearest centre."""
    return _nearest_labels(np.ascontiguousarray(out_labels, dtype=np.int64), out_geo.centre(0), float(out_geo.stride),
                           geo.centre(0), float(geo.stride), n_frames)


@njit(cache=True, nogil=True)
def _nearest_labels(out_labels: np.ndarray, out_c0: float, out_stride: float, c0: float, stride: float,
                    n_frames: int) -> np.ndarray:
    """`map_letters` compiled: frame u (centre ``c0 + stride·u``) takes the label of `layer_frame`."""
    lab = np.full(n_frames, -1, dtype=np.int64)
    for u in range(n_frames):
        t = np.rint((c0 + stride * u - out_c0) / out_stride)
        if 0 <= t < out_labels.shape[0]:
            lab[u] = out_labels[int(t)]
    return lab


def phone_table(phones: list[Segment]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A corpus alignment as arrays: start and end times (s) and group index (-1: not ARPAbet/sil)."""
    return (np.array([p.start for p in phones], dtype=np.float64), np.array([p.end for p in phones], dtype=np.float64),
            np.array([phone_index(p.label) for p in phones], dtype=np.int64))


def map_phones(phones: list[Segment], geo: Geometry, n_frames: int, frame_rate: float) -> np.ndarray:
    """Phonemes of a layer's frames: the phone whose time span contains the frame's centre."""
    return map_phone_table(phone_table(phones), geo, n_frames, frame_rate)


def map_phone_table(table: tuple[np.ndarray, np.ndarray, np.ndarray], geo: Geometry, n_frames: int,
                    frame_rate: float) -> np.ndarray:
    """`map_phones` for an alignment already in arrays (`phone_table`)."""
    starts, ends, idx = table
    return _phone_labels(starts, ends, idx, geo.centre(0), float(geo.stride), n_frames, float(frame_rate))


@njit(cache=True, nogil=True)
def _phone_labels(starts: np.ndarray, ends: np.ndarray, idx: np.ndarray, c0: float, stride: float, n_frames: int,
                  frame_rate: float) -> np.ndarray:
    """`map_phone_table` compiled: frame u (centre time ``(c0 + stride·u) / frame_rate``) takes the
    last phone that starts at or before it, if it has not ended."""
    lab = np.full(n_frames, -1, dtype=np.int64)
    if starts.shape[0] == 0:
        return lab
    for u in range(n_frames):
        t = (c0 + stride * u) / frame_rate
        k = np.searchsorted(starts, t, side="right") - 1
        if k >= 0 and t < ends[k]:
            lab[u] = idx[k]
    return lab
