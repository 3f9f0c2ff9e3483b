"""BM25 over bm25s, configured like Anserini's BEIR baseline (Lucene BM25, k1=0.9, b=0.4).

Text is analysed as Lucene's EnglishAnalyzer does: lower-cased words, Lucene's 33 English stopwords,
the Porter stemmer (PyStemmer). Title and text are indexed as one field ("flat"). On BEIR SciFact this
gives nDCG@10 0.671 (BEIR's published BM25: 0.665; see benchmarks/results/retrieval.md).
Only documents that share a term with the query are returned, as in Lucene.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import bm25s
import numpy as np
import Stemmer

from rankwise.data import Run
from rankwise.errors import InputError
from rankwise.retrieve.retriever import document_text, read_index_meta, write_index_meta
from rankwise.types import Document

_DOCIDS = "docids.json"


class BM25Retriever:
    """Sparse first stage: ``BM25Retriever().index(docs).retrieve(queries, top_k=100) -> Run``."""

    name = "bm25"

    def __init__(self, k1: float = 0.9, b: float = 0.4, method: str = "lucene", stemmer: str | None = "porter",
                 stopwords: str | None = "en", show_progress: bool = True):
        self.k1, self.b, self.method = k1, b, method
        self.stemmer_name, self.stopwords = stemmer, stopwords
        self.show_progress = show_progress
        try:
            self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        except KeyError:
            raise InputError(f"unknown stemmer {stemmer!r} (PyStemmer knows: "
                             f"{', '.join(Stemmer.algorithms())})") from None
        self._bm25: bm25s.BM25 | None = None
        self.docids: list[str] = []

    def _tokenize(self, texts: list[str], return_ids: bool):
        return bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=self._stemmer, return_ids=return_ids,
                              show_progress=self.show_progress and return_ids)

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        """The terms the index sees for each text: lower-cased words, stopwords removed, stemmed."""
        return self._tokenize(texts, return_ids=False)

    def index(self, docs: Mapping[str, Document]) -> "BM25Retriever":
        """Index title + text of every document (replaces any earlier index)."""
        if not docs:
            raise InputError("no documents to index")
        self.docids = list(docs)
        tokens = self._tokenize([document_text(docs[d]) for d in self.docids], return_ids=True)
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._bm25.index(tokens, show_progress=self.show_progress)
        return self

    def retrieve(self, queries: Mapping[str, str], top_k: int = 100) -> Run:
        """The ``top_k`` best documents of each query (fewer if fewer share a term with it)."""
        if self._bm25 is None:
            raise RuntimeError("BM25Retriever.retrieve called before index() or load()")
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        qids = list(queries)
        if not qids:
            return {}
        tokens = self.tokenize([queries[q] for q in qids])
        k = min(top_k, len(self.docids))
        indices, scores = self._bm25.retrieve(tokens, k=k, show_progress=self.show_progress)
        run: Run = {}
        for qid, idx, sc in zip(qids, np.asarray(indices), np.asarray(scores)):
            run[qid] = {self.docids[i]: float(s) for i, s in zip(idx, sc) if s > 0}
        return run

    def save(self, directory: str | Path) -> None:
        """Write bm25s's index files plus the docids and analysis settings to ``directory``."""
        if self._bm25 is None:
            raise RuntimeError("nothing to save: call index() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(d), show_progress=False)
        (d / _DOCIDS).write_text(json.dumps(self.docids), encoding="utf-8")
        write_index_meta(d, {"retriever": self.name, "k1": self.k1, "b": self.b, "method": self.method,
                             "stemmer": self.stemmer_name, "stopwords": self.stopwords})

    @classmethod
    def load(cls, directory: str | Path, show_progress: bool = True) -> "BM25Retriever":
        """Load an index written by :meth:`save`."""
        d = Path(directory)
        meta = read_index_meta(d, cls.name)
        retriever = cls(k1=meta["k1"], b=meta["b"], method=meta["method"], stemmer=meta["stemmer"],
                        stopwords=meta["stopwords"], show_progress=show_progress)
        try:
            retriever._bm25 = bm25s.BM25.load(str(d), show_progress=False)
            retriever.docids = json.loads((d / _DOCIDS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"incomplete BM25 index: {err}", d) from None
        if len(retriever.docids) != retriever._bm25.scores["num_docs"]:
            raise InputError(f"{len(retriever.docids)} docids for {retriever._bm25.scores['num_docs']} "
                             "indexed documents", d)
        return retriever

