"""Reranking methods: one module per paradigm, all built on the llm/ primitives."""

from rankwise.methods.method import Method
from rankwise.methods.registry import (
    MethodInfo,
    Option,
    build_method,
    method_info,
    method_names,
)

__all__ = ["Method", "MethodInfo", "Option", "build_method", "method_info", "method_names"]
