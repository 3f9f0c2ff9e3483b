"""rank_llm's current Request/Result JSON (``rank_llm.data``), read and written.

    {"query": {"text": str, "qid": str | int},
     "candidates": [{"docid": str | int, "score": float, "doc": {"contents" | "text" | "segment" | ...: str,
                                                                  "title"?: str}}, ...]}

A file is a JSON list of such objects or JSON lines of them (by extension, as rank_llm decides). A Result has
the same fields (plus ``invocations_history``, which rankwise neither needs nor writes). The document text is
read from the first of ``DOC_TEXT_KEYS`` present, the key order rank_llm's prompts use; rankwise writes
``contents`` (Pyserini's field, what rank_llm's own retrieval writes for MS MARCO passages).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from rankwise.data._io import open_for_write
from rankwise.errors import InputError
from rankwise.types import Candidate, Query, Ranking, Request

DOC_TEXT_KEYS = ("text", "segment", "contents", "content", "body", "passage")


def is_rank_llm(item: Any) -> bool:
    """A rank_llm Request/Result object: ``query`` an object and ``candidates`` a list with ``doc``s."""
    return (isinstance(item, dict) and isinstance(item.get("query"), dict)
            and isinstance(item.get("candidates"), list)
            and all(isinstance(c, dict) and "doc" in c for c in item["candidates"]))


def _id(obj: dict, key: str, where: str, path: Path, line: int | None) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: '{key}' must be a string or an integer, got {value!r}", path, line)
    return str(value)


def _candidate(obj: Any, where: str, path: Path, line: int | None) -> Candidate:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object", path, line)
    docid = _id(obj, "docid", where, path, line)
    score = obj.get("score", 0.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InputError(f"{where}: 'score' must be a number, got {score!r}", path, line)
    doc = obj["doc"]
    if not isinstance(doc, dict):
        raise InputError(f"{where}: 'doc' must be an object", path, line)
    key = next((k for k in DOC_TEXT_KEYS if k in doc), None)
    if key is None or not isinstance(doc[key], str):
        raise InputError(f"{where}: 'doc' needs a text field (one of {', '.join(DOC_TEXT_KEYS)})", path, line)
    title = doc.get("title") or ""
    if not isinstance(title, str):
        raise InputError(f"{where}: 'doc.title' must be a string", path, line)
    return Candidate(docid, doc[key], float(score), title)


def request_from_rank_llm(item: dict, where: str, path: Path, line: int | None = None) -> Request:
    """One rank_llm Request (or Result) object as a Request; candidates keep the file's order."""
    query = item["query"]
    if not isinstance(query.get("text"), str):
        raise InputError(f"{where}: 'query.text' must be a string", path, line)
    qid = _id(query, "qid", f"{where}, query", path, line)
    candidates = tuple(_candidate(c, f"{where}, candidate {j}", path, line)
                       for j, c in enumerate(item["candidates"], 1))
    return Request(Query(qid, query["text"]), candidates)


def to_rank_llm(item: Request | Ranking) -> dict:
    """A Request or Ranking in rank_llm's shape (a Ranking with the method's scores, in its order)."""
    scores = item.scores if isinstance(item, Ranking) else tuple(c.score for c in item.candidates)
    return {"query": {"text": item.query.text, "qid": item.query.qid},
            "candidates": [{"docid": c.docid, "score": float(s),
                            "doc": {"contents": c.text} | ({"title": c.title} if c.title else {})}
                           for c, s in zip(item.candidates, scores)]}


def write_rank_llm(items: Sequence[Request | Ranking], path: str | Path) -> None:
    """Write rank_llm Requests (from Requests) or Results (from Rankings): JSON lines where ``path`` ends in
    .jsonl, else a JSON list (as rank_llm's ``DataWriter`` writes them); gzipped if it ends in .gz."""
    objects = [to_rank_llm(item) for item in items]
    with open_for_write(path) as f:
        if Path(path).name.endswith((".jsonl", ".jsonl.gz")):
            f.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
        else:
            json.dump(objects, f, ensure_ascii=False, indent=2)
            f.write("\n")
