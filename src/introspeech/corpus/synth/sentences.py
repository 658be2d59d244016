"""Sentence sources available offline: WordNet usage examples and fortunes (Debian packages).

A sentence is kept when, after normalization, it has 3–20 words that are all in CMUdict, so every
word has a reference pronunciation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...text import cmu_dictionary, normalize_text

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Every plain fortune file of Debian's fortunes-min / fortunes, except pictures and files whose
# jokes are about groups of people (the offensive set lives in fortunes-off and is never read).
FORTUNE_EXCLUDE = frozenset({"ascii-art", "ethnic", "men-women", "drugs", "perl", "linuxcookie"})


def wordnet_lines(kind: str, root: Path = WORDNET_DIR) -> Iterator[str]:
    """Lines of WordNet's ``KIND.noun``, ``KIND.verb``, ``KIND.adj``, ``KIND.adv`` (``kind``: ``data``
    or ``index``), without the licence header; missing files are skipped."""
    for part in ("noun", "verb", "adj", "adv"):
        path = root / f"{kind}.{part}"
        if path.is_file():
            yield from (line for line in path.read_text(encoding="latin-1").splitlines() if not line.startswith("  "))


def wordnet_examples(root: Path = WORDNET_DIR) -> Iterator[str]:
    """Quoted usage examples from WordNet glosses (``data.noun``, ``data.verb``, ...)."""
    for line in wordnet_lines("data", root):
        yield from re.findall(r'"([^"]+)"', line.partition("| ")[2])


def fortune_sentences(root: Path = FORTUNE_DIR) -> Iterator[str]:
    """Sentences of the inoffensive fortune files, split at sentence punctuation."""
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.name in FORTUNE_EXCLUDE:
            continue
        for block in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            if re.search(r"^\s*--|\t", block, flags=re.M):  # attributions and verse layouts
                block = re.split(r"\n\s*--", block)[0]
            flat = " ".join(block.split())
            yield from (s for s in re.split(r"(?<=[.!?])\s+", flat) if s)


def clean_sentences(raw: Iterable[str], min_words: int = 3, max_words: int = 20) -> list[str]:
    """Normalized, de-duplicated sentences whose words are all in CMUdict, in first-seen order."""
    cmu = cmu_dictionary()
    seen: set[str] = set()
    out = []
    for s in raw:
        if re.search(r"[0-9@#$%&*=+<>|_/\\]", s):
            continue
        norm = normalize_text(s).text
        words = norm.split()
        if not (min_words <= len(words) <= max_words) or norm in seen:
            continue
        if all(w in cmu for w in words):
            seen.add(norm)
            out.append(norm)
    return out


def sentence_pool() -> list[str]:
    """All usable sentences: WordNet examples first, then fortunes."""
    pool = clean_sentences(wordnet_examples()) + clean_sentences(fortune_sentences())
    if not pool:
        raise RuntimeError(f"no sentences found: install Debian's wordnet-base ({WORDNET_DIR}) "
                           f"and fortunes-min ({FORTUNE_DIR})")
    return list(dict.fromkeys(pool))
