"""Choosing queries independently of file order, so two runs of one collection select the same ones.

Queries are ordered by :func:`qid_key`: numerically where the qid is a number, then the others as strings.
``--max-queries N`` takes the first N in that order; ``--qids`` names them (a comma-separated list, or a
file whose lines start with a qid: a list, a topics TSV or a qrels file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rankwise.data._io import iter_lines
from rankwise.errors import InputError


def qid_key(qid: str) -> tuple[int, int, str]:
    """Sort key: numeric qids by value first (``2`` before ``10``), then the rest as strings."""
    return (0, int(qid), qid) if qid.isdigit() else (1, 0, qid)


def parse_qids(value: str) -> list[str]:
    """Query ids from ``value``: an existing file (first column of each non-empty line, ``#`` lines
    skipped), else a comma-separated list. Duplicates are dropped, order kept."""
    path = Path(value)
    if path.is_file():
        qids = [line.split()[0] for _, line in iter_lines(path) if line.strip() and not line.startswith("#")]
        if not qids:
            raise InputError("no query ids in the file", path)
    else:
        qids = [q.strip() for q in value.split(",") if q.strip()]
        if not qids:
            raise InputError(f"--qids: no query ids in {value!r} (a comma-separated list, or a file)")
        if len(qids) == 1 and ("/" in value or "." in value):
            raise InputError(f"--qids: no such file {value!r} (or give qids separated by commas)")
    return list(dict.fromkeys(qids))


def select_qids(available: Iterable[str], *, qids: list[str] | None = None,
                max_queries: int | None = None, source: str = "the input") -> list[str]:
    """The chosen qids in :func:`qid_key` order: those of ``qids`` (each must be available), else all;
    then the first ``max_queries``. An unknown qid is an InputError naming it and ``source``."""
    pool = list(dict.fromkeys(available))
    if qids is not None:
        known = set(pool)
        unknown = [q for q in qids if q not in known]
        if unknown:
            more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
            raise InputError(f"--qids: {', '.join(unknown[:3])}{more} not in {source}")
        pool = list(qids)
    if max_queries is not None and max_queries < 1:
        raise InputError(f"--max-queries must be at least 1, got {max_queries}")
    return sorted(pool, key=qid_key)[:max_queries]


def describe_selection(selected: list[str], total: int) -> str:
    """One line naming the selected queries (printed so that the same ones can be chosen again)."""
    shown = ", ".join(selected[:10]) + (f", ... ({len(selected) - 10} more)" if len(selected) > 10 else "")
    return f"selected {len(selected)} of {total} queries (qid order): {shown}"
