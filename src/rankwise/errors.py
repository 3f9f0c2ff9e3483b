"""Errors that reach users as one line naming the problem (file, line, field)."""

from __future__ import annotations

from pathlib import Path


class RankwiseError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits non-zero."""


class InputError(RankwiseError):
    """Malformed or missing user input, located by file and line where known."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class ModelError(RankwiseError):
    """A model cannot be resolved, loaded or verified."""
