"""Word n-gram language models: interpolated Kneser-Ney estimation, ARPA files, scoring.

`NgramLM.estimate` counts normalized sentences and computes interpolated Kneser-Ney
probabilities (one absolute discount per order, ``D = n1 / (n1 + 2 n2)``); n-grams below
``min_count`` at orders above 1 are then left out, and every history's backoff weight is
recomputed so that its distribution still sums to one (the ARPA backoff convention). Any ARPA
file (e.g. one written by KenLM's ``lmplz``) can be read with `NgramLM.read_arpa`.

Written here because the usual Python decoder with LM fusion (pyctcdecode) pins ``numpy<2`` and
KenLM's estimator is not on PyPI; the formulas are Chen & Goodman (1998), section 3.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import InputError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)


class NgramLM:
    """A backoff word n-gram model: ``prob[n][gram]`` and ``backoff[n][history]`` in natural log.

    ``gram`` is a tuple of ``n`` words; a missing backoff weight is 0 (ln 1)."""

    def __init__(self, prob: list[dict[tuple[str, ...], float]], backoff: list[dict[tuple[str, ...], float]]):
        self.order = len(prob)
        self.prob = prob
        self.backoff = backoff
        self.vocab = frozenset(w for (w,) in prob[0] if w not in (BOS, EOS, UNK))
        self._unk = prob[0].get((UNK,), -100.0 * LN10)

    # -- scoring ------------------------------------------------------------------------------
    def logprob(self, history: tuple[str, ...], word: str) -> float:
        """ln P(word | history) with backoff; words outside the vocabulary score as ``<unk>``."""
        if word not in self.vocab and word != EOS:
            word = UNK
        history = self.state(history)
        acc = 0.0
        for start in range(len(history) + 1):
            h = history[start:]
            p = self.prob[len(h)].get((*h, word))
            if p is not None:
                return acc + p
            if len(h):
                acc += self.backoff[len(h) - 1].get(h, 0.0)
        return acc + self._unk

    def state(self, history: tuple[str, ...]) -> tuple[str, ...]:
        """The part of ``history`` that can change later scores (at most ``order - 1`` words)."""
        return history[len(history) - self.order + 1:] if self.order > 1 else ()

    def sentence_logprob(self, words: Iterable[str]) -> float:
        """ln P of a whole sentence, from ``<s>`` to ``</s>``."""
        h: tuple[str, ...] = (BOS,)
        total = 0.0
        for w in [*words, EOS]:
            total += self.logprob(h, w)
            h = self.state((*h, w))
        return total

    # -- estimation ---------------------------------------------------------------------------
    @classmethod
    def estimate(cls, sentences: Iterable[str], order: int = 3, min_count: int = 1) -> NgramLM:
        """Interpolated Kneser-Ney model of whitespace-tokenized sentences.

        Counted with numpy: every n-gram is one integer (its word ids in base ``V``, the
        vocabulary size), so that counting, continuation counts and history totals are sorts."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        index = {BOS: 0, EOS: 1}
        ids: list[int] = []
        for s in sentences:
            words = s.split()
            if words:
                ids.append(0)
                ids.extend(index.setdefault(w, len(index)) for w in words)
                ids.append(1)
        if not ids:
            raise ValueError("no words to estimate a language model from")
        v = len(index)
        if v ** order >= 2 ** 63:
            raise ValueError(f"order {order} with {v} words does not fit 64-bit n-gram keys; use a lower order")
        seq = np.asarray(ids, dtype=np.int64)
        keys: list[np.ndarray] = [np.zeros(0, np.int64)]  # per order: distinct n-grams, sorted
        raw: list[np.ndarray] = [np.zeros(0, np.int64)]  # and how often each occurs
        for n in range(1, order + 1):
            cols = [seq[i:len(seq) - n + 1 + i] for i in range(n)]
            ok = cols[0] != 0 if n == 1 else np.ones(len(cols[0]), bool)  # <s> is a history, never a unigram
            key = np.zeros(len(cols[0]), np.int64)
            for i, c in enumerate(cols):  # within one sentence: </s> only last, <s> only first
                if i < n - 1:
                    ok &= c != 1
                if i > 0:
                    ok &= c != 0
                key = key * v + c
            k, c = np.unique(key[ok], return_counts=True)
            keys.append(k)
            raw.append(c)
        # Lower orders count distinct left contexts (continuation counts), except n-grams that
        # start a sentence, which have no left context and keep their raw count.
        adjusted = [np.zeros(0)] * (order + 1)
        adjusted[order] = raw[order].astype(np.float64)
        for n in range(order - 1, 0, -1):
            suffix, cont = np.unique(keys[n + 1] % v ** n, return_counts=True)
            a = np.zeros(len(keys[n]))
            a[np.searchsorted(keys[n], suffix)] = cont
            first = keys[n] // v ** (n - 1) == 0
            a[first] = raw[n][first]
            adjusted[n] = a
        discount = [0.0] + [_discount(adjusted[n]) for n in range(1, order + 1)]
        # order 1: discounted continuation counts, the discounted mass spread over the vocabulary and <unk>
        a, d = adjusted[1], discount[1]
        spread = d * len(a) / a.sum() / (len(a) + 1)
        interp = [np.zeros(0), np.log((a - d) / a.sum() + spread)]  # ln p of every counted n-gram
        for n in range(2, order + 1):
            a, d = adjusted[n], discount[n]
            _, inv = np.unique(keys[n] // v, return_inverse=True)
            total = np.bincount(inv, weights=a)[inv]
            gamma = d * np.bincount(inv)[inv] / total
            lower = np.exp(interp[n - 1][np.searchsorted(keys[n - 1], keys[n] % v ** (n - 1))])
            interp.append(np.log(np.maximum(a - d, 0.0) / total + gamma * lower))
        vocab = np.array(list(index), dtype=object)
        prob: list[dict] = []
        for n in range(1, order + 1):
            keep = raw[n] >= min_count if n > 1 else np.ones(len(keys[n]), bool)
            k = keys[n][keep]
            words = [vocab[(k // v ** (n - 1 - i)) % v] for i in range(n)]
            prob.append(dict(zip(zip(*words), interp[n][keep].tolist())))
        prob[0][(UNK,)] = math.log(spread)
        prob[0][(BOS,)] = -99.0 * LN10  # a history, never predicted
        lm = cls(prob, [dict() for _ in range(order)])
        lm._normalize_backoffs()
        return lm

    def _normalize_backoffs(self) -> None:
        """Backoff weight of every history: the mass its kept n-grams leave, over the mass the
        lower order gives the same words: ``(1 - Σ p(w|h)) / (1 - Σ p(w|h'))``."""
        for n in range(2, self.order + 1):
            seen: dict = defaultdict(float)
            lower: dict = defaultdict(float)
            for g, p in self.prob[n - 1].items():
                seen[g[:-1]] += math.exp(p)
                lower[g[:-1]] += math.exp(self.logprob(g[1:-1], g[-1]))
            bo = {}
            for h in seen:
                left, low = 1.0 - seen[h], 1.0 - lower[h]
                bo[h] = math.log(max(left, 1e-12) / max(low, 1e-12))
            self.backoff[n - 2] = bo  # a history with nothing kept above it backs off with weight 1

    # -- ARPA files ---------------------------------------------------------------------------
    def write_arpa(self, path: Path) -> None:
        """Write the model as an ARPA text file (log10 probabilities and backoff weights)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n in range(self.order):
                f.write(f"ngram {n + 1}={len(self.prob[n])}\n")
            for n in range(self.order):
                f.write(f"\n\\{n + 1}-grams:\n")
                for g, p in self.prob[n].items():
                    line = f"{p / LN10:.6f}\t{' '.join(g)}"
                    if n < self.order - 1 and g in self.backoff[n]:
                        line += f"\t{self.backoff[n][g] / LN10:.6f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path: Path) -> NgramLM:
        """Read an ARPA file (any order; the probabilities as written, nothing re-estimated)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such language model file")
        prob: list[dict] = []
        backoff: list[dict] = []
        n = 0
        with path.open(encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.strip()
                if not line or line.startswith("ngram ") or line == "\\data\\":
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("\\") and line.endswith("-grams:"):
                    n = int(line[1:-7])
                    while len(prob) < n:
                        prob.append({})
                        backoff.append({})
                    continue
                parts = line.split()
                if n == 0 or len(parts) not in (n + 1, n + 2):
                    raise InputError(path, f"not an ARPA language model (line {line[:60]!r})")
                g = tuple(parts[1:n + 1])
                prob[n - 1][g] = float(parts[0]) * LN10
                if len(parts) == n + 2:
                    backoff[n - 1][g] = float(parts[n + 1]) * LN10
        if not prob or not prob[0]:
            raise InputError(path, "not an ARPA language model (no 1-grams)")
        return cls(prob, backoff)


def _discount(counts: np.ndarray) -> float:
    """Absolute discount ``n1 / (n1 + 2 n2)`` from the counts of counts (0.5 when undefined)."""
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
