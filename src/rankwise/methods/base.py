"""The method contract, the registry of method names, and what every method shares."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from rankwise.errors import InputError
from rankwise.types import Candidate, Query, Ranking, Usage


class Reranker(Protocol):
    name: str

    def rerank(self, query: Query, candidates: Sequence[Candidate], top_k: int | None = None) -> Ranking:
        """Reorder the first ``top_k`` candidates (all if None); the rest follow in input order."""
        ...


@dataclass(frozen=True)
class MethodInfo:
    name: str
    factory: Callable[..., Reranker]
    needs: str  # "llm" or "embedding"
    description: str


_REGISTRY: dict[str, MethodInfo] = {}
# Modules that register methods on import; listed here so ``method_names()`` sees all of them.
_METHOD_MODULES = ("rankwise.methods.pointwise", "rankwise.methods.pairwise", "rankwise.methods.setwise")


def register(name: str, needs: str, description: str):
    def wrap(factory):
        _REGISTRY[name] = MethodInfo(name, factory, needs, description)
        return factory

    return wrap


def _load_all() -> None:
    for module in _METHOD_MODULES:
        importlib.import_module(module)


def method_infos() -> list[MethodInfo]:
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda m: m.name)


def method_names() -> list[str]:
    return [m.name for m in method_infos()]


def method_info(name: str) -> MethodInfo:
    """The registered method called ``name``; an unknown name is an InputError naming close ones."""
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(sorted(_REGISTRY))})"
        raise InputError(f"unknown method {name!r}{hint}")
    return _REGISTRY[name]


def build_method(name: str, backend, **options) -> Reranker:
    """Construct a registered method over a backend, e.g. ``build_method("pointwise.yes_no", llm)``."""
    return method_info(name).factory(backend, **options)


def usage_since(backend, before: Usage) -> Usage:
    """What the backend spent since the snapshot ``before``."""
    return backend.usage.copy() - before


def with_tail(query: Query, candidates: Sequence[Candidate], head: Ranking, usage: Usage) -> Ranking:
    """Append the candidates past the reranked head, in their input order, scored below the head."""
    tail = candidates[len(head.candidates):]
    floor = min(head.scores, default=0.0)
    tail_scores = tuple(floor - 1.0 - i for i in range(len(tail)))
    return Ranking(query, head.candidates + tuple(tail), head.scores + tail_scores, usage)
