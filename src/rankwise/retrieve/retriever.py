"""What every first-stage retriever offers, the step from a run to candidates with text, index metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Protocol

from rankwise.data import Run, requests_from_run
from rankwise.errors import InputError
from rankwise.types import Document, Request

INDEX_META = "rankwise.json"
"""The file in an index directory that names the retriever and its settings."""


class Retriever(Protocol):
    """Index documents once, then return the top ``top_k`` of each query as a Run (best first)."""

    name: str
    docids: list[str]

    def index(self, docs: Mapping[str, Document]) -> "Retriever": ...

    def retrieve(self, queries: Mapping[str, str], top_k: int = 100) -> Run: ...

    def save(self, directory: str | Path) -> None: ...


def document_text(doc: Document) -> str:
    """Title and text joined by a space (what BEIR's retrievers index)."""
    return f"{doc.title} {doc.text}" if doc.title else doc.text


def retrieve_candidates(retriever: Retriever, queries: Mapping[str, str], docs: Mapping[str, Document],
                        top_k: int = 100) -> tuple[Run, list[Request]]:
    """Retrieve for ``queries`` and pair the run with document texts (rank_llm-style requests)."""
    run = retriever.retrieve(queries, top_k)
    return run, requests_from_run(run, queries, docs)


def write_index_meta(directory: Path, meta: dict) -> None:
    (directory / INDEX_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_index_meta(directory: str | Path, retriever: str | None = None) -> dict:
    """The settings of a saved index; InputError if there is none or it belongs to another retriever."""
    path = Path(directory) / INDEX_META
    if not path.is_file():
        raise InputError(f"not a rankwise index (no {INDEX_META})", directory)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON: {err.msg}", path, err.lineno) from None
    if not isinstance(meta, dict) or "retriever" not in meta:
        raise InputError("not a rankwise index file: no 'retriever'", path)
    if retriever is not None and meta["retriever"] != retriever:
        raise InputError(f"index was built by retriever {meta['retriever']!r}, not {retriever!r}", path)
    return meta
