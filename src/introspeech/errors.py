"""Errors that name the file or argument at fault."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the file (and line) or argument, and says what is wrong."""

    def __init__(self, source: str | Path, message: str, line: int | None = None):
        self.source = str(source)
        self.line = line
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")


def split_skip(text: str) -> tuple[str, str]:
    """(file, reason) of a skipped item as batch runs record it (``FILE: [utterance ID: ][FILE: ]REASON``)."""
    source, _, rest = text.partition(": ")
    rest = re.sub(r"^utterance [^:]+: ", "", rest)
    if rest.startswith(source + ": "):
        rest = rest[len(source) + 2:]
    return source, rest


def reason_kind(reason: str) -> str:
    """A reason without its numbers and parenthesized details: what skips of one kind share."""
    return re.sub(r"\s+", " ", re.sub(r"\d+(\.\d+)?", "N", re.sub(r"\([^)]*\)", "", reason))).strip(" .;")


def report_skipped(folder: str | Path, skipped: list[str], echo) -> Path | None:
    """Write every skipped item with its reason to ``FOLDER/skipped.tsv`` and ``echo`` the count per
    kind of reason; nothing when nothing was skipped."""
    if not skipped:
        return None
    rows = [split_skip(t) for t in skipped]
    path = Path(folder) / "skipped.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("file\treason\n" + "".join(f"{f}\t{r}\n" for f, r in rows), encoding="utf-8")
    counts = Counter(reason_kind(r) for _, r in rows)
    echo(f"{len(rows)} skipped (listed in {path}):")
    for kind, n in counts.most_common():
        echo(f"  {n:>5}  {kind}")
    return path
