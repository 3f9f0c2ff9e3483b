"""Reranking methods: one module per paradigm, all built on the llm/ primitives."""

from rankwise.methods.base import Reranker, build_method, load_reranker, method_names

__all__ = ["Reranker", "build_method", "load_reranker", "method_names"]
