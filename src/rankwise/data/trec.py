"""TREC run, qrels and topics files (plain or gzipped)."""

from __future__ import annotations

import math
from pathlib import Path

from rankwise.data._io import iter_lines, json_object, open_for_write
from rankwise.errors import InputError

Run = dict[str, dict[str, float]]
"""qid -> {docid: score}; insertion order is rank order (best first)."""
Qrels = dict[str, dict[str, int]]
"""qid -> {docid: grade}."""

_BEIR_QRELS_HEADER = ["query-id", "corpus-id", "score"]


def _number(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a number", path, line) from None
    if math.isnan(value):
        raise InputError(f"{what} {text!r} is not a number", path, line)
    return value


def read_run(path: str | Path) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``); each query sorted by score, descending.

    Ties keep file order. A duplicated (qid, docid), a wrong column count or a non-numeric score is
    an InputError naming the line.
    """
    p = Path(path)
    run: Run = {}
    for n, line in iter_lines(p):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 6:
            raise InputError(f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}", p, n)
        qid, _, docid, _, score, _ = cols
        ranked = run.setdefault(qid, {})
        if docid in ranked:
            raise InputError(f"duplicate docid {docid} for query {qid}", p, n)
        ranked[docid] = _number(score, "score", p, n)
    if not run:
        raise InputError("empty run file", p)
    return {qid: dict(sorted(docs.items(), key=lambda kv: -kv[1])) for qid, docs in run.items()}


def _check_token(value: str, what: str, path: Path) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise InputError(f"cannot write {what} {value!r} to a TREC file: it is empty or contains whitespace", path)


def write_run(run: Run, path: str | Path, tag: str = "rankwise") -> None:
    """Write ``run`` in TREC format: ranks 1..n in the run's order, scores as given.

    Scores must not increase down a query's list, otherwise evaluation tools would re-sort it.
    """
    p = Path(path)
    _check_token(tag, "tag", p)
    for qid, docs in run.items():
        _check_token(qid, "qid", p)
        previous = math.inf
        for docid, score in docs.items():
            _check_token(docid, "docid", p)
            if float(score) > previous:
                raise ValueError(f"run for query {qid} is not in descending score order at docid {docid} "
                                 f"({score} after {previous})")
            previous = float(score)
    with open_for_write(p) as f:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(docs.items(), 1):
                f.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iter docid grade``) or BEIR qrels TSV (header ``query-id corpus-id score``)."""
    p = Path(path)
    qrels: Qrels = {}
    beir = None
    for n, line in iter_lines(p):
        cols = line.split()
        if not cols:
            continue
        if beir is None:
            beir = cols == _BEIR_QRELS_HEADER
            if beir:
                continue
        if beir:
            if len(cols) != 3:
                raise InputError(f"expected 3 columns (query-id corpus-id score), got {len(cols)}", p, n)
            qid, docid, grade_text = cols
        else:
            if len(cols) != 4:
                raise InputError(f"expected 4 columns (qid iter docid grade), got {len(cols)}", p, n)
            qid, _, docid, grade_text = cols
        try:
            grade = int(grade_text)
        except ValueError:
            raise InputError(f"grade {grade_text!r} is not an integer", p, n) from None
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, grade) != grade:
            raise InputError(f"conflicting grades for query {qid}, docid {docid}: "
                             f"{judged[docid]} and {grade}", p, n)
        judged[docid] = grade
    if not qrels:
        raise InputError("empty qrels file", p)
    return qrels


_ID_KEYS = ("_id", "qid", "id")
_TEXT_KEYS = ("text", "query")


def _jsonl_topic(line: str, path: Path, n: int) -> tuple[str, str]:
    obj = json_object(line, path, n)
    qid = next((obj[k] for k in _ID_KEYS if k in obj), None)
    text = next((obj[k] for k in _TEXT_KEYS if k in obj), None)
    if qid is None:
        raise InputError("missing '_id'", path, n)
    if not isinstance(text, str):
        raise InputError("missing 'text'" if text is None else "'text' is not a string", path, n)
    return str(qid), text


def read_topics(path: str | Path) -> dict[str, str]:
    """Read queries: TSV ``qid<TAB>text``, or JSONL (BEIR ``_id``/``text``) when the name ends .jsonl[.gz]."""
    p = Path(path)
    jsonl = p.name.endswith((".jsonl", ".jsonl.gz"))
    topics: dict[str, str] = {}
    for n, line in iter_lines(p):
        if not line.strip():
            continue
        if jsonl:
            qid, text = _jsonl_topic(line, p, n)
        else:
            qid, sep, text = line.partition("\t")
            qid = qid.strip()
            if not sep or not qid:
                raise InputError("expected qid<TAB>text", p, n)
        if qid in topics:
            raise InputError(f"duplicate query id {qid}", p, n)
        topics[qid] = text.strip()
    if not topics:
        raise InputError("empty topics file", p)
    return topics
