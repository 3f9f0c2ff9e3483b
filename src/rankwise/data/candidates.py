"""First-stage candidate files: rank_llm/RankGPT JSON and JSON lines, and conversions to and from runs.

rank_llm's current Request/Result JSON, a list or JSON lines (:mod:`rankwise.data.rank_llm`)::

    [{"query": {"text", "qid"}, "candidates": [{"docid", "score", "doc": {"contents", "title"?}}, ...]}, ...]

The older RankGPT shape of rank_llm JSON (optionally gzipped)::

    [{"query": str, "hits": [{"qid", "docid", "content", "score", "rank"}, ...]}, ...]

JSON lines, one query per line::

    {"qid": str, "query": str, "documents": [{"docid", "text", "title"?, "score"?}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from rankwise.data._io import first_char, iter_lines, json_object, open_for_write, read_text
from rankwise.data.rank_llm import is_rank_llm, request_from_rank_llm
from rankwise.data.trec import Run
from rankwise.errors import InputError
from rankwise.types import Candidate, Document, Query, Request


def _fail(where: str, message: str, path: Path, line: int | None = None) -> InputError:
    return InputError(f"{where}: {message}", path, line)


def _string(obj: dict, key: str, where: str, path: Path, line: int | None, ids: bool = False) -> str:
    if key not in obj:
        raise _fail(where, f"missing '{key}'", path, line)
    value = obj[key]
    if ids and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _fail(where, f"'{key}' must be a string", path, line)
    return value


def _score(obj: dict, where: str, path: Path, line: int | None) -> float:
    value = obj.get("score", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"'score' must be a number, got {value!r}", path, line)
    return float(value)


def _request(qid: str, query: str, candidates: list[Candidate], where: str, path: Path,
             line: int | None, seen: set[str]) -> Request:
    if qid in seen:
        raise _fail(where, f"duplicate query id {qid}", path, line)
    seen.add(qid)
    docids: set[str] = set()
    for c in candidates:
        if c.docid in docids:
            raise _fail(where, f"duplicate docid {c.docid} for query {qid}", path, line)
        docids.add(c.docid)
    return Request(Query(qid, query), tuple(candidates))


def _rank_llm_hit(hit: Any, qid: str | None, where: str, path: Path) -> tuple[str | None, Candidate]:
    if not isinstance(hit, dict):
        raise _fail(where, "expected an object", path)
    hit_qid = _string(hit, "qid", where, path, None, ids=True) if "qid" in hit else None
    if qid is not None and hit_qid is not None and hit_qid != qid:
        raise _fail(where, f"qid {hit_qid} differs from the query's qid {qid}", path)
    docid = _string(hit, "docid", where, path, None, ids=True)
    content = _string(hit, "content", where, path, None)
    title = _string(hit, "title", where, path, None) if "title" in hit else ""
    if title and content.startswith(title + "\n"):  # written by write_candidates: content = title + text
        content = content[len(title) + 1:]
    return qid or hit_qid, Candidate(docid, content, _score(hit, where, path, None), title)


def _read_rank_llm(path: Path) -> list[Request]:
    text = read_text(path)
    if not text.strip():
        raise InputError("empty file", path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON: {err.msg} (column {err.colno})", path, err.lineno) from None
    if not isinstance(data, list):
        raise InputError('expected a JSON list of rank_llm {"query", "candidates"} or {"query", "hits"} objects',
                         path)
    requests: list[Request] = []
    seen: set[str] = set()
    for i, item in enumerate(data, 1):
        where = f"query {i}"
        if not isinstance(item, dict):
            raise _fail(where, "expected an object", path)
        if is_rank_llm(item):
            r = request_from_rank_llm(item, where, path)
            requests.append(_request(r.query.qid, r.query.text, list(r.candidates), where, path, None, seen))
            continue
        query = _string(item, "query", where, path, None)
        hits = item.get("hits")
        if not isinstance(hits, list):
            raise _fail(where, "missing 'hits' list", path)
        qid = _string(item, "qid", where, path, None, ids=True) if "qid" in item else None
        candidates = []
        for j, hit in enumerate(hits, 1):
            qid, candidate = _rank_llm_hit(hit, qid, f"{where}, hit {j}", path)
            candidates.append(candidate)
        if qid is None:
            raise _fail(where, "no 'qid' on the query or its hits", path)
        if all(isinstance(h.get("rank"), int) for h in hits):
            order = sorted(range(len(hits)), key=lambda k: hits[k]["rank"])
            candidates = [candidates[k] for k in order]
        requests.append(_request(qid, query, candidates, where, path, None, seen))
    if not requests:
        raise InputError("no queries in file", path)
    return requests


def _jsonl_request(line: str, path: Path, n: int, seen: set[str]) -> Request:
    obj = json_object(line, path, n)
    if is_rank_llm(obj):
        r = request_from_rank_llm(obj, "query", path, n)
        return _request(r.query.qid, r.query.text, list(r.candidates), f"query {r.query.qid}", path, n, seen)
    qid = _string(obj, "qid", "query", path, n, ids=True)
    query = _string(obj, "query", f"query {qid}", path, n)
    documents = obj.get("documents")
    if not isinstance(documents, list):
        raise _fail(f"query {qid}", "missing 'documents' list", path, n)
    candidates = []
    for j, doc in enumerate(documents, 1):
        where = f"query {qid}, document {j}"
        if not isinstance(doc, dict):
            raise _fail(where, "expected an object", path, n)
        title = _string(doc, "title", where, path, n) if "title" in doc else ""
        candidates.append(Candidate(_string(doc, "docid", where, path, n, ids=True),
                                    _string(doc, "text", where, path, n), _score(doc, where, path, n), title))
    return _request(qid, query, candidates, f"query {qid}", path, n, seen)


def _read_jsonl(path: Path) -> list[Request]:
    seen: set[str] = set()
    requests = [_jsonl_request(line, path, n, seen) for n, line in iter_lines(path) if line.strip()]
    if not requests:
        raise InputError("empty file", path)
    return requests


def read_candidates(path: str | Path) -> list[Request]:
    """Read candidates in rank_llm JSON or JSONL, current or RankGPT shape (by extension, else by the first
    character; the shape by the fields).

    Candidates come back in first-stage rank order; errors name the file and the JSON line, or the
    query and hit index (1-based) inside a rank_llm JSON list.
    """
    p = Path(path)
    if p.name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(p)
    if p.name.endswith((".json", ".json.gz")):
        return _read_rank_llm(p)
    start = first_char(p)
    if start == "[":
        return _read_rank_llm(p)
    if start == "{":
        return _read_jsonl(p)
    if not start:
        raise InputError("empty file", p)
    raise InputError("not a candidates file: expected a rank_llm JSON list or JSON lines", p)


def write_candidates(requests: Sequence[Request], path: str | Path) -> None:
    """Write rank_llm JSON, or JSONL where ``path`` ends in .jsonl (as :func:`read_candidates` reads them
    back); gzipped if it ends in .gz. A title is kept as a ``title`` field."""
    if Path(path).name.endswith((".jsonl", ".jsonl.gz")):
        write_candidates_jsonl(requests, path)
        return
    out = []
    for r in requests:
        hits = []
        for rank, c in enumerate(r.candidates, 1):
            hit: dict[str, Any] = {"content": c.content, "qid": r.query.qid, "docid": c.docid,
                                   "rank": rank, "score": float(c.score)}
            if c.title:
                hit["title"] = c.title
            hits.append(hit)
        out.append({"query": r.query.text, "qid": r.query.qid, "hits": hits})
    with open_for_write(path) as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_candidates_jsonl(requests: Sequence[Request], path: str | Path) -> None:
    """Write one JSON object per query: ``{"qid", "query", "documents": [{"docid", "text", ...}]}``."""
    with open_for_write(path) as f:
        for r in requests:
            docs = []
            for c in r.candidates:
                doc: dict[str, Any] = {"docid": c.docid, "text": c.text, "score": float(c.score)}
                if c.title:
                    doc["title"] = c.title
                docs.append(doc)
            f.write(json.dumps({"qid": r.query.qid, "query": r.query.text, "documents": docs},
                               ensure_ascii=False) + "\n")


def _examples(items: list[str], total: int) -> str:
    more = f" (and {total - len(items)} more)" if total > len(items) else ""
    return ", ".join(items) + more


def requests_from_run(run: Run, queries: Mapping[str, str], docs: Mapping[str, Document],
                      top_k: int | None = None) -> list[Request]:
    """Pair a run with query and document texts: one Request per query, its top ``top_k`` in run order."""
    missing_queries = [qid for qid in run if qid not in queries]
    if missing_queries:
        raise InputError(f"no text for query {_examples(missing_queries[:3], len(missing_queries))}")
    requests, missing_docs = [], []
    for qid, ranked in run.items():
        candidates = []
        for docid, score in list(ranked.items())[:top_k]:
            try:
                doc = docs[docid]
            except KeyError:
                missing_docs.append(f"{docid} (query {qid})")
                continue
            candidates.append(Candidate(docid, doc.text, float(score), doc.title))
        requests.append(Request(Query(qid, queries[qid]), tuple(candidates)))
    if missing_docs:
        raise InputError(f"no text for document {_examples(missing_docs[:3], len(missing_docs))}")
    return requests


def run_from_requests(requests: Sequence[Request]) -> Run:
    """The first-stage run behind ``requests``, in candidate order.

    Uses the candidates' scores, unless they are all 0 (missing) or disagree with the candidate
    order (rise somewhere); then scores fall with rank: n, n-1, ..., 1.
    """
    run: Run = {}
    for r in requests:
        qid = r.query.qid
        if qid in run:
            raise InputError(f"duplicate query {qid} in the candidates")
        scores = [c.score for c in r.candidates]
        descending = all(a >= b for a, b in zip(scores, scores[1:]))
        if not descending or not any(scores):
            scores = [float(len(scores) - i) for i in range(len(scores))]
        ranked: dict[str, float] = {}
        for c, s in zip(r.candidates, scores):
            if c.docid in ranked:
                raise InputError(f"duplicate docid {c.docid} for query {qid} in the candidates")
            ranked[c.docid] = s
        run[qid] = ranked
    return run


def docs_from_requests(requests: Sequence[Request]) -> dict[str, Document]:
    """The documents that candidates carry, by docid (the first text seen wins)."""
    docs: dict[str, Document] = {}
    for r in requests:
        for c in r.candidates:
            if c.docid not in docs:
                docs[c.docid] = Document(c.docid, c.text, c.title)
    return docs
