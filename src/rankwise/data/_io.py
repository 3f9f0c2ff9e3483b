"""File access shared by the readers (gzip by content, UTF-8 per line, every failure an InputError) and the
writers (a file appears under its name only once complete: written beside it, then moved into place)."""

from __future__ import annotations

import gzip
import io
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, TextIO

from rankwise.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


def existing_file(path: str | Path) -> Path:
    """``path`` as a Path, or InputError if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", p)
    if not p.is_file():
        raise InputError("is a directory, expected a file", p)
    return p


@contextmanager
def _open_binary(path: Path) -> Iterator[BinaryIO]:
    try:
        f = path.open("rb")
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror or err}", path) from None
    with f:
        if f.read(2) == _GZIP_MAGIC:
            f.seek(0)
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                yield gz
        else:
            f.seek(0)
            yield f


def _utf8_error(err: UnicodeDecodeError, raw: bytes, path: Path, line: int, column_base: int = 0) -> InputError:
    col = err.start - column_base + 1
    return InputError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {col})", path, line)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line of a (possibly gzipped) UTF-8 file, newline removed."""
    p = existing_file(path)
    with _open_binary(p) as f:
        n = 0
        try:
            for n, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _utf8_error(err, raw, p, n) from None
                if n == 1:
                    text = text.removeprefix("\ufeff")
                yield n, text.rstrip("\r\n")
        except (OSError, EOFError) as err:
            raise InputError(f"cannot read (corrupt or truncated gzip?): {err}", p, n + 1 if n else None) from None


def read_text(path: str | Path) -> str:
    """The whole file as text (gunzipped if gzipped); a decoding error names its line."""
    p = existing_file(path)
    with _open_binary(p) as f:
        try:
            data = f.read()
        except (OSError, EOFError) as err:
            raise InputError(f"cannot read (corrupt or truncated gzip?): {err}", p) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        raise _utf8_error(err, data, p, line, line_start) from None


def first_char(path: str | Path) -> str:
    """The first non-whitespace character of a (possibly gzipped) file, '' if there is none."""
    for _, line in iter_lines(path):
        stripped = line.lstrip()
        if stripped:
            return stripped[0]
    return ""


@contextmanager
def open_for_write(path: str | Path) -> Iterator[TextIO]:
    """Open ``path`` for UTF-8 text writing (gzip, reproducibly, if it ends in .gz); create parent dirs."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".gz":
        with p.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
                io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
            yield f
    else:
        with p.open("w", encoding="utf-8", newline="\n") as f:
            yield f


@contextmanager
def temporary_beside(path: str | Path) -> Iterator[Path]:
    """A fresh name in ``path``'s directory that ends like ``path`` (so writers that go by the suffix, .gz or
    .jsonl, write the same format), removed at the end if still there; the directory is created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".rankwise-{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, target: Path, replace: bool = True) -> bool:
    """Move ``tmp`` to ``target`` atomically: over any file there, or (``replace=False``) only where there is
    none (a hard link fails on an existing name); False, and ``tmp`` left, if there is one."""
    if replace:
        os.replace(tmp, target)
        return True
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then replace
        if target.exists():
            return False
        os.replace(tmp, target)
        return True


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(a temporary file beside path)``, then that file moved over ``path``: readers (and parallel
    writers) see the old file or the whole new one, never a part."""
    with temporary_beside(path) as tmp:
        write(tmp)
        publish(tmp, Path(path))


def json_object(line: str, path: Path, n: int) -> dict:
    """One JSONL line parsed as an object; anything else is an InputError naming file and line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON: {err.msg} (column {err.colno})", path, n) from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object", path, n)
    return obj


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """A user's YAML (or, for a ``.json`` name, JSON) file parsed; InputError naming the file and the line
    of a syntax error, or saying the ``what`` is missing."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such {what}", p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the {what}: {err}", p) from None
    try:
        return json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", p, err.lineno) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(err, 'problem', None) or err}", p,
                         mark.line + 1 if mark is not None else None) from None
