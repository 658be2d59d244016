"""CTC prefix beam search with a word language model (shallow fusion).

A hypothesis is a prefix of letters. For each one the search keeps the log probability of the
frames so far ending in a blank (``p_b``) and in its last letter (``p_nb``), so that the prefix
probability ``logaddexp(p_b, p_nb)`` sums every CTC path that collapses to it (Graves 2012,
section 7.3). A hypothesis ranks by

    ln P_ctc(prefix) + alpha * ln P_lm(finished words) + beta * (number of words) + penalty,

where a word is finished by a space or by the end of the utterance (which also scores
``</s>``), and ``penalty`` (``unk_penalty``) applies while the unfinished word is no prefix of
any word the language model knows. With ``alpha = beta = unk_penalty = 0`` and no pruning it is
exact CTC prefix search: the returned prefix maximizes ``P_ctc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..text import BLANK, LETTERS
from .lm import EOS, NgramLM

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@dataclass(frozen=True)
class BeamSettings:
    """Options of `BeamDecoder`: fusion weights and pruning.

    ``beam``: hypotheses kept per frame. ``alpha``: weight of the language model's ln probability;
    ``beta``: bonus per word; ``unk_penalty``: added while the current word is no prefix of a known
    word (and to a finished unknown word). ``token_min_logp``: letters less likely than this in a
    frame are not tried there (the most likely letter always is); ``prune_logp``: hypotheses this
    far below the best are dropped. ``-inf`` turns either pruning off."""

    beam: int = 32
    alpha: float = 0.5
    beta: float = 2.0
    unk_penalty: float = -10.0
    token_min_logp: float = -10.0
    prune_logp: float = -20.0

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be at least 1, got {self.beam}")


@dataclass
class _Words:
    """Language-model side of a prefix: the fused score of its finished words, the model state
    after them and the unfinished word."""

    score: float
    state: tuple[str, ...]
    partial: str
    penalty: float


class BeamDecoder:
    """Decode ``(frames, symbols)`` log probabilities of the built-in alphabet to text.

    >>> dec = BeamDecoder(NgramLM.read_arpa("lm.arpa"), BeamSettings(alpha=0.6, beta=1.5))  # doctest: +SKIP
    >>> dec.decode(log_probs)  # doctest: +SKIP
    'press one to call this number'
    """

    def __init__(self, lm: NgramLM | None = None, settings: BeamSettings = BeamSettings()):
        self.lm = lm
        self.settings = settings
        self._prefixes: frozenset[str] = frozenset()
        if lm is not None:
            spellable = set(LETTERS) - {" "}
            odd = sorted(w for w in lm.vocab if not set(w) <= spellable)
            if odd:  # such words could never be decoded: every hypothesis would score as unknown
                raise ValueError(f"the language model has {len(odd)} words outside the alphabet a-z and ' "
                                 f"(e.g. {', '.join(map(repr, odd[:3]))}); estimate it from normalized, lower-case text")
            self._prefixes = frozenset(w[:i] for w in lm.vocab for i in range(1, len(w) + 1))
        self._start = _Words(0.0, lm.state(("<s>",)) if lm is not None else (), "", 0.0)

    # -- language-model bookkeeping ---------------------------------------------------------------
    def _word_score(self, words: _Words, word: str) -> tuple[float, tuple[str, ...]]:
        s = self.settings
        if self.lm is None:
            return s.beta, ()
        score = s.alpha * self.lm.logprob(words.state, word) + s.beta
        if word not in self.lm.vocab:
            score += s.unk_penalty
        return score, self.lm.state((*words.state, word))

    def _extend(self, words: _Words, letter: str) -> _Words:
        if letter == " ":
            add, state = self._word_score(words, words.partial)
            return _Words(words.score + add, state, "", 0.0)
        partial = words.partial + letter
        known = self.lm is None or partial in self._prefixes
        return _Words(words.score, words.state, partial, 0.0 if known else self.settings.unk_penalty)

    def _finish(self, words: _Words) -> float:
        score, state = words.score, words.state
        if words.partial:
            add, state = self._word_score(words, words.partial)
            score += add
        if self.lm is not None:
            score += self.settings.alpha * self.lm.logprob(state, EOS)
        return score

    # -- search -------------------------------------------------------------------------------------
    def decode(self, log_probs: np.ndarray) -> str:
        """Best transcript of one utterance's ``(frames, symbols)`` log probabilities (blank last)."""
        return self.search(log_probs)[0][0].rstrip(" ")

    def search(self, log_probs: np.ndarray) -> list[tuple[str, float, float]]:
        """Final hypotheses, best first: ``(labelling, ln P_ctc, fused score)``.

        A labelling is the collapsed CTC path with runs of spaces merged and leading spaces
        dropped (a trailing space is kept: ``"ab "`` and ``"ab"`` are different labellings)."""
        lp = np.asarray(log_probs, dtype=np.float64)
        if lp.ndim != 2 or lp.shape[1] != BLANK + 1:
            raise ValueError(f"log_probs must be (frames, {BLANK + 1}) for the built-in alphabet, got {lp.shape}")
        s = self.settings
        beams: dict[str, tuple[float, float]] = {"": (0.0, NEG_INF)}
        words: dict[str, _Words] = {"": self._start}
        for t in range(lp.shape[0]):
            row = lp[t]
            blank = float(row[BLANK])
            letters = row[:BLANK]
            best = int(np.argmax(letters))
            tried = [c for c in np.flatnonzero((letters >= s.token_min_logp) & (letters > NEG_INF)) if c != best] + [best]
            nxt: dict[str, list[float]] = {}
            for prefix, (pb, pnb) in beams.items():
                total = _logaddexp(pb, pnb)
                cell = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
                cell[0] = _logaddexp(cell[0], blank + total)
                for c in tried:
                    p = float(row[c])
                    letter = LETTERS[c]
                    if letter == " " and (not prefix or prefix[-1] == " "):
                        cell[0] = _logaddexp(cell[0], p + total)  # no empty words: a space here is silence
                        continue
                    ext = prefix + letter
                    if ext not in words:
                        words[ext] = self._extend(words[prefix], letter)
                    target = nxt.setdefault(ext, [NEG_INF, NEG_INF])
                    if prefix and prefix[-1] == letter:  # a repeat needs a blank in between
                        cell[1] = _logaddexp(cell[1], p + pnb)
                        target[1] = _logaddexp(target[1], p + pb)
                    else:
                        target[1] = _logaddexp(target[1], p + total)
            ranked = sorted(((self._rank(k, v, words), k, v) for k, v in nxt.items()), key=lambda e: -e[0])
            floor = ranked[0][0] + s.prune_logp
            beams = {k: (v[0], v[1]) for r, k, v in ranked[:s.beam] if r > NEG_INF and r >= floor}  # impossible go
        final = []
        for prefix, (pb, pnb) in beams.items():
            ctc = _logaddexp(pb, pnb)
            final.append((prefix, ctc, ctc + self._finish(words[prefix])))
        final.sort(key=lambda r: -r[2])
        return final

    @staticmethod
    def _rank(prefix: str, cell, words: dict[str, _Words]) -> float:
        w = words[prefix]
        return _logaddexp(cell[0], cell[1]) + w.score + w.penalty
