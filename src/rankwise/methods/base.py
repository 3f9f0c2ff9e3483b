"""The method contract, the registry of method names, and what every method shares."""

from __future__ import annotations

import importlib
import pkgutil
import re
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
# Modules of this package that hold no method; every other module registers its methods on import.
_NOT_METHODS = {"base", "sorting", "permutation"}


def register(name: str, needs: str, description: str):
    def wrap(factory):
        _REGISTRY[name] = MethodInfo(name, factory, needs, description)
        return factory

    return wrap


def _load_all() -> None:
    import rankwise.methods as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_METHODS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


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
    """Construct a registered method over a backend, e.g. ``build_method("pointwise.yes_no", llm)``;
    an option the method does not take is an InputError naming it. ``guard=True`` (any method) demotes
    candidates that instruct the ranker (``rankwise.guard``)."""
    factory = method_info(name).factory
    guard = options.pop("guard", False)
    try:
        method = factory(backend, **options)
    except TypeError as err:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unknown is None:
            raise
        raise InputError(f"method {name} has no option {unknown.group(1)!r}") from None
    return _guarded(method, guard)


def _guarded(method: Reranker, guard: bool | int | dict) -> Reranker:
    """``guard``: false (off), true (the default threshold), a number of signals, or {threshold: N}."""
    if guard is False or guard is None:
        return method
    from rankwise.guard import DEFAULT_THRESHOLD, GuardedReranker

    if guard is True:
        return GuardedReranker(method)
    if isinstance(guard, dict) and set(guard) <= {"threshold"}:
        return GuardedReranker(method, guard.get("threshold", DEFAULT_THRESHOLD))
    if isinstance(guard, int):
        return GuardedReranker(method, guard)
    raise InputError(f"option guard must be true, false, a number of signals or {{threshold: N}}, got {guard!r}")


BackendLoader = Callable[..., object]
_LOADERS: dict[str, BackendLoader] = {}


def register_loader(needs: str):
    """Declare how to load the backend of methods that need ``needs`` (a model name -> backend)."""

    def wrap(loader: BackendLoader) -> BackendLoader:
        _LOADERS[needs] = loader
        return loader

    return wrap


@register_loader("llm")
def _load_llm(model: str, *, engine: str = "auto", dtype: str = "auto", cache=True, **options):
    from rankwise.llm import load_backend

    return load_backend(model, engine=engine, dtype=dtype, cache=cache, **options)


@register_loader("embedding")
def _load_embedding(model: str, *, engine: str = "auto", dtype: str = "auto", cache=True, **options):
    from rankwise.llm.embeddings import SentenceTransformerBackend

    return SentenceTransformerBackend(model, batch_size=options.get("batch_size", 64))


def load_backend_for(method: str, model: str, **backend_options):
    """The backend ``method`` runs on, loaded for ``model`` (an LLM, an embedding model, ...)."""
    info = method_info(method)
    if info.needs not in _LOADERS:
        raise InputError(f"method {method!r} needs a {info.needs} backend, and none is registered")
    return _LOADERS[info.needs](model, **backend_options)


def load_reranker(method: str, model: str, *, backend_options: dict | None = None, **method_options) -> Reranker:
    """Load ``model`` on the backend ``method`` needs and build the method, e.g.
    ``load_reranker("pointwise.yes_no", "qwen2.5-0.5b", backend_options={"engine": "transformers"})``."""
    backend = load_backend_for(method, model, **(backend_options or {}))
    return build_method(method, backend, **method_options)


def usage_since(backend, before: Usage) -> Usage:
    """What the backend spent since the snapshot ``before``."""
    return backend.usage.copy() - before


def with_tail(query: Query, candidates: Sequence[Candidate], head: Ranking, usage: Usage) -> Ranking:
    """Append the candidates past the reranked head, in their input order, scored below the head."""
    tail = candidates[len(head.candidates):]
    floor = min(head.scores, default=0.0)
    tail_scores = tuple(floor - 1.0 - i for i in range(len(tail)))
    return Ranking(query, head.candidates + tuple(tail), head.scores + tail_scores, usage)
