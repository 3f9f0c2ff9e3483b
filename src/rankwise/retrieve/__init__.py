"""First-stage retrieval: BM25 (bm25s) and dense (sentence-transformers), both returning a Run."""

from rankwise.retrieve.retriever import Retriever, document_text, read_index_meta, retrieve_candidates
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.retrieve.dense import DenseRetriever

__all__ = ["BM25Retriever", "DenseRetriever", "Retriever", "document_text", "read_index_meta",
           "retrieve_candidates"]
