"""The bad inputs every rerank server must refuse with the right 4xx (and keep serving after)."""

from __future__ import annotations

import json
from dataclasses import dataclass

JSON = {"content-type": "application/json"}
GOOD = {"query": "what is the capital of France?",
        "documents": ["Paris is the capital of France.", {"text": "Sourdough bread rises because of yeast."}]}


@dataclass(frozen=True)
class BadInput:
    name: str
    body: bytes
    status: int
    field: str | None
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def _json(value) -> bytes:
    return json.dumps(value).encode()


def bad_inputs() -> list[BadInput]:
    """Refused under the default limits (1000 documents, 20,000 characters, 2 MiB body)."""
    docs = GOOD["documents"]
    return [
        BadInput("empty query", _json({"query": "", "documents": docs}), 422, "query"),
        BadInput("blank query", _json({"query": "  \n", "documents": docs}), 422, "query"),
        BadInput("missing query", _json({"documents": docs}), 422, "query"),
        BadInput("zero documents", _json({"query": "q", "documents": []}), 422, "documents"),
        BadInput("10,000 documents", _json({"query": "q", "documents": ["a passage"] * 10_000}), 422, "documents"),
        BadInput("a 5 MB document", _json({"query": "q", "documents": ["x" * 5_000_000]}), 413, "body"),
        BadInput("query is a number", _json({"query": 42, "documents": docs}), 422, "query"),
        BadInput("documents is a string", _json({"query": "q", "documents": "Paris"}), 422, "documents"),
        BadInput("a document is a number", _json({"query": "q", "documents": ["a", 7]}), 422, "documents[1]"),
        BadInput("a document object without text", _json({"query": "q", "documents": [{"body": "a"}]}), 422,
                 "documents[0].text"),
        BadInput("top_n is a string", _json({**GOOD, "top_n": "1"}), 422, "top_n"),
        BadInput("top_n is zero", _json({**GOOD, "top_n": 0}), 422, "top_n"),
        BadInput("return_documents is a string", _json({**GOOD, "return_documents": "yes"}), 422,
                 "return_documents"),
        BadInput("body is a list", _json([GOOD]), 422, "body"),
        BadInput("a 3,000-character query", _json({"query": "q" * 3000, "documents": docs}), 422, "query"),
        BadInput("invalid JSON", b'{"query": "q", "documents": [', 400, "body"),
        BadInput("empty body", b"", 400, "body"),
        BadInput("non-UTF-8 bytes", b'{"query": "caf\xe9", "documents": ["a"]}', 400, "body"),
        BadInput("an unpaired surrogate", b'{"query": "q", "documents": ["\\ud800"]}', 422, "documents[0]"),
        BadInput("not sent as JSON", b"query=q&documents=a", 415, "Content-Type",
                 (("content-type", "application/x-www-form-urlencoded"),)),
    ]


def check_error(response, status: int, field: str | None) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["field"] == field and error["message"] and error["type"]


def check_ranking(body: dict, n: int) -> None:
    """A valid rerank response over n documents: every index once, sorted by relevance."""
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(n))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert body["usage"]["prompts"] == n
