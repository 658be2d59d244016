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
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

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
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
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
        """Interpolated Kneser-Ney model of whitespace-tokenized sentences."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        counts: list[Counter] = [Counter() for _ in range(order)]
        for s in sentences:
            words = [BOS, *s.split(), EOS]
            if len(words) == 2:
                continue
            for n in range(1, order + 1):
                for i in range(int(n == 1), len(words) - n + 1):  # <s> is a history, never a unigram
                    counts[n - 1][tuple(words[i:i + n])] += 1
        if not counts[0]:
            raise ValueError("no words to estimate a language model from")
        # Lower orders count distinct left contexts (continuation counts), except n-grams that
        # start a sentence, which have no left context and keep their raw count.
        adjusted: list[Counter] = [Counter() for _ in range(order)]
        adjusted[order - 1] = counts[order - 1]
        for n in range(order - 1, 0, -1):
            for gram in counts[n]:
                adjusted[n - 1][gram[1:]] += 1
            for gram, c in counts[n - 1].items():
                if gram[0] == BOS:
                    adjusted[n - 1][gram] = c
        discount = [_discount(adjusted[n]) for n in range(order)]
        prob: list[dict] = [dict() for _ in range(order)]
        # order 1: discounted continuation counts, the discounted mass spread over the vocabulary and <unk>
        uni = {g: c for g, c in adjusted[0].items() if g != (BOS,)}
        total = sum(uni.values())
        spread = discount[0] * len(uni) / total / (len(uni) + 1)
        for g, c in uni.items():
            prob[0][g] = math.log((c - discount[0]) / total + spread)
        prob[0][(UNK,)] = math.log(spread)
        prob[0][(BOS,)] = -99.0 * LN10  # a history, never predicted
        interp = [dict(prob[0])]  # interpolated probabilities of every counted n-gram, per order
        for n in range(2, order + 1):
            c = adjusted[n - 1]
            hist_total: dict = defaultdict(int)
            hist_types: dict = defaultdict(int)
            for g, k in c.items():
                hist_total[g[:-1]] += k
                hist_types[g[:-1]] += 1
            d = discount[n - 1]
            level = {}
            for g, k in c.items():
                h = g[:-1]
                gamma = d * hist_types[h] / hist_total[h]
                lower = math.exp(_interp_lookup(interp, g[1:]))
                level[g] = math.log(max(k - d, 0.0) / hist_total[h] + gamma * lower)
            interp.append(level)
            prob[n - 1] = {g: p for g, p in level.items() if counts[n - 1][g] >= min_count}
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


def _discount(counts: Counter) -> float:
    """Absolute discount ``n1 / (n1 + 2 n2)`` from the counts of counts (0.5 when undefined)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _interp_lookup(interp: list[dict], gram: tuple[str, ...]) -> float:
    """Interpolated ln p of a counted lower-order n-gram (every suffix of a counted n-gram is counted)."""
    return interp[len(gram) - 1][gram]
