"""The files a command writes: checked before any work starts, each written to a temporary file beside its
target and moved into place at the end, never over a file that appeared meanwhile (unless --overwrite)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from rankwise.data._io import publish, temporary_beside
from rankwise.errors import InputError


class Outputs:
    """A command's output files.

    ``add`` checks a target at start-up (before any model loads); ``write`` writes it through a temporary
    file and publishes it; ``finish`` refuses, naming both files, where another process created a target
    while this command ran: that file is left alone and ours is kept under a new name.
    """

    def __init__(self, overwrite: bool, inputs: Iterable[str | Path | None] = ()):
        self.overwrite = overwrite
        self.inputs = {Path(p).resolve() for p in inputs if p is not None and Path(p).exists()}
        self.targets: set[Path] = set()
        self.conflicts: list[str] = []

    def add(self, path: str | Path | None) -> Path | None:
        """``path`` checked as a file this command may write (None passes through)."""
        if path is None:
            return None
        out = Path(path)
        check_writable(out)
        resolved = out.resolve()
        if resolved in self.inputs:
            raise InputError("the output would overwrite an input file; choose another --output", out)
        if resolved in self.targets:
            raise InputError("named for two outputs; give each its own file", out)
        if out.exists() and not self.overwrite:
            raise InputError("already exists; pass --overwrite to replace it", out)
        self.targets.add(resolved)
        return out

    def write(self, path: str | Path, write: Callable[[Path], object]) -> Path:
        """``write(temporary path)``, then the file moved to ``path``; returns where it is (``path``, or the
        name ours was kept under when another process created ``path`` meanwhile)."""
        target = Path(path)
        try:
            with temporary_beside(target) as tmp:
                write(tmp)
                if publish(tmp, target, replace=self.overwrite):
                    return target
                kept = _keep_beside(tmp, target)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", target) from None
        self.conflicts.append(f"{target}: appeared while this command ran (another process wrote it?); left it "
                              f"as it is and wrote ours to {kept}")
        return kept

    def finish(self) -> None:
        """InputError naming every target another process created meanwhile (and where ours went)."""
        if self.conflicts:
            raise InputError("; ".join(self.conflicts) + "; pass --overwrite to replace such files")


def check_writable(path: Path) -> None:
    """InputError unless a file can be created at ``path``: not a directory, and its nearest existing
    ancestor a directory this user may write in."""
    if path.is_dir():
        raise InputError("is a directory, expected a file to write", path)
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write here: {parent} is a file, not a directory", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here: no permission to write in {parent}", path)


def _keep_beside(tmp: Path, target: Path) -> Path:
    """``tmp`` published under the first free name ``NAME.rankwise-PID[-N].EXT`` beside ``target``."""
    name = target.name
    ext = "".join(Path(name).suffixes[-2:]) if name.endswith(".gz") else Path(name).suffix
    stem = name[:len(name) - len(ext)] if ext else name
    kept, n = target.with_name(f"{stem}.rankwise-{os.getpid()}{ext}"), 1
    while not publish(tmp, kept, replace=False):
        n += 1
        kept = target.with_name(f"{stem}.rankwise-{os.getpid()}-{n}{ext}")
    return kept
