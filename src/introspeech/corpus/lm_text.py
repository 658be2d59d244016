"""Text for language models, from Debian's WordNet: definitions and headwords.

The definitions are the glosses without their quoted usage examples, which the speech
synthesizer reads (`corpus.synth.sentences`): a model estimated from this text has never seen
the sentences of a synthetic corpus. Headwords (``index.noun``, ...) come one per line, so that
isolated words are likely too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..text import normalize_text
from .synth.sentences import WORDNET_DIR, wordnet_lines


def wordnet_definitions(root: Path = WORDNET_DIR) -> Iterator[str]:
    """Normalized definitions of every synset, split at semicolons, usage examples removed."""
    for line in wordnet_lines("data", root):
        gloss = re.sub(r'"[^"]*"', ";", line.partition("| ")[2])
        for piece in gloss.split(";"):
            text = normalize_text(piece).text
            if text:
                yield text


def wordnet_headwords(root: Path = WORDNET_DIR) -> Iterator[str]:
    """Every headword (a word or a phrase such as ``mail box``), normalized."""
    for line in wordnet_lines("index", root):
        text = normalize_text(line.split(" ", 1)[0]).text
        if text:
            yield text


def lm_sentences(root: Path = WORDNET_DIR) -> list[str]:
    """Definitions then headwords; an error naming the package when WordNet is missing."""
    out = [*wordnet_definitions(root), *wordnet_headwords(root)]
    if not out:
        raise FileNotFoundError(f"no WordNet text found in {root}: install Debian's wordnet-base")
    return out
