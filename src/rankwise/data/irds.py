"""Datasets through ir_datasets (optional dependency): queries, qrels and a lazy docstore."""

from __future__ import annotations

import importlib.util
from typing import Any, Iterator, Mapping

from rankwise.data.dataset import Dataset
from rankwise.errors import InputError, RankwiseError
from rankwise.types import Document

INSTALL_HINT = "pip install 'rankwise[irds]'"


def installed() -> bool:
    return importlib.util.find_spec("ir_datasets") is not None


def _ir_datasets() -> Any:
    if not installed():
        raise RankwiseError(f"loading ir_datasets ids needs the ir_datasets package: {INSTALL_HINT}")
    import ir_datasets

    return ir_datasets


def is_ir_dataset_id(dataset_id: str) -> bool:
    """Whether ir_datasets is installed and knows ``dataset_id`` (no download happens)."""
    if not installed():
        return False
    try:
        _ir_datasets().load(dataset_id)
    except KeyError:
        return False
    return True


def _failed(dataset_id: str, err: Exception) -> RankwiseError:
    # ir_datasets raises RuntimeError("All download sources failed", [...]) after logging each failure
    reason = err.args[0] if isinstance(err, RuntimeError) and err.args else err
    return RankwiseError(f"{dataset_id}: ir_datasets could not provide it: {reason}")


def _document(doc: Any) -> Document:
    text = getattr(doc, "text", None)
    if not isinstance(text, str):
        text = doc.default_text()
    return Document(doc.doc_id, text, getattr(doc, "title", "") or "")


class IrdsDocs(Mapping[str, Document]):
    """docid -> Document over an ir_datasets docstore, opened (and maybe downloaded) on first use."""

    def __init__(self, dataset: Any, dataset_id: str):
        self._dataset = dataset
        self._id = dataset_id
        self._store: Any = None

    def __getitem__(self, docid: str) -> Document:
        try:
            if self._store is None:
                self._store = self._dataset.docs_store()
            return _document(self._store.get(docid))
        except (OSError, RuntimeError) as err:
            raise _failed(self._id, err) from err

    def __iter__(self) -> Iterator[str]:
        return (doc.doc_id for doc in self._dataset.docs_iter())

    def __len__(self) -> int:
        count = self._dataset.docs_count()
        return count if count is not None else sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"IrdsDocs({self._id})"


def load_ir_dataset(dataset_id: str) -> Dataset:
    """Load queries and qrels of an ir_datasets id; documents come from its docstore when first used."""
    irds = _ir_datasets()
    try:
        ds = irds.load(dataset_id)
    except KeyError:
        raise InputError(f"{dataset_id}: unknown ir_datasets id") from None
    try:
        queries = {}
        if ds.has_queries():
            for q in ds.queries_iter():
                text = getattr(q, "text", None)
                queries[q.query_id] = text if isinstance(text, str) else q.default_text()
        qrels: dict[str, dict[str, int]] = {}
        if ds.has_qrels():
            for qrel in ds.qrels_iter():
                qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    except (OSError, RuntimeError) as err:
        raise _failed(dataset_id, err) from err
    docs = IrdsDocs(ds, dataset_id) if ds.has_docs() else None
    return Dataset(dataset_id, queries, qrels, docs)
