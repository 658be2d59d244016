"""Errors that name the file or argument at fault."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the file (and line) or argument, and says what is wrong."""

    def __init__(self, source: str | Path, message: str, line: int | None = None):
        self.source = str(source)
        self.line = line
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")
