"""The method contract, the registry of method names with their declared options, and what every method shares.

A method is a :class:`Method`: it orders the head of a candidate list with backend calls and returns the
Ranking with the usage of those calls. The head/tail split, the usage and the stage contract are written
here once; a method writes only ``rank`` (order the candidates it is given).
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rankwise.errors import InputError
from rankwise.llm.base import Backend, usage_of
from rankwise.stage import Stage, StagePath, record_leaf, with_tail
from rankwise.types import Candidate, Query, Ranking, Request, Usage


class Method(Stage):
    """Base of every reranking method. A method IS a stage: ``bm25 >> method % 20`` composes directly.

    Subclasses set ``name`` and ``backend`` and implement :meth:`rank`.
    """

    name: str
    backend: Backend
    top_k: int | None = None  # set by ``method % k`` (a copy of the method that reranks only the top k)

    def rank(self, query: Query, candidates: list[Candidate]) -> Ranking:
        """Order every candidate given; the Ranking carries the usage of the backend calls made."""
        raise NotImplementedError

    def rerank(self, query: Query, candidates: Sequence[Candidate], top_k: int | None = None) -> Ranking:
        """Reorder the first ``top_k`` candidates (all if None); the rest follow in input order, below."""
        head = list(candidates[: top_k or len(candidates)])
        ranked = self.rank(query, head) if head else Ranking(query, (), (), Usage())
        return with_tail(query, candidates, ranked, ranked.usage)

    def rerank_all(self, requests: Sequence[Request], top_k: int | None = None, *, query_batch: int = 1,
                   on_done: Callable[[Ranking], None] | None = None) -> list[Ranking]:
        """Rerank every request, in order. With ``query_batch`` > 1, that many queries run at once and the
        backend calls they make at the same step go to the backend as one call (``llm.batching``): the
        prompts of many queries in one batch, as a GPU wants them. Rankings and usage are those of the
        one-query-at-a-time run on a batch-invariant engine (the transformers engine is one)."""
        done = on_done or (lambda ranking: None)
        if query_batch <= 1 or len(requests) <= 1:
            out = []
            for request in requests:
                out.append(self.rerank(request.query, request.candidates, top_k))
                done(out[-1])
            return out
        from rankwise.llm.batching import BatchingBackend

        batcher = BatchingBackend(self.backend, max_wait_ms=50.0, max_batch_prompts=10**9)
        twin = self.with_backend(batcher)

        def one(request: Request) -> Ranking:
            with batcher.request_scope():
                ranking = twin.rerank(request.query, request.candidates, top_k)
            done(ranking)
            return ranking

        try:
            with ThreadPoolExecutor(query_batch, thread_name_prefix="rankwise-query") as pool:
                return list(pool.map(one, requests))
        finally:
            batcher.close()

    def with_backend(self, backend: Backend) -> "Method":
        """This method over another backend (a batching or caching wrapper of its own)."""
        twin = copy.copy(self)
        twin.backend = backend
        return twin

    # -- as a stage ------------------------------------------------------------------------------
    def _expr(self) -> str:
        spec = getattr(self, "spec", None)
        if spec is None:  # built by hand: it runs, but only a loaded reranker prints as what rebuilds it
            return f"{type(self).__name__}({self.name!r})"
        from rankwise.stage import _call

        return _call("Rerank", spec["method"], model=spec["model"], **spec.get("options", {}))

    _own_top_k = True

    def _apply(self, requests: list[Request], ctx, path: StagePath) -> list[Ranking]:
        return self.apply_as(self, requests, ctx, path)

    def apply_as(self, stage: Stage, requests: list[Request], ctx, path: StagePath) -> list[Ranking]:
        """Rerank ``requests`` as ``stage`` of a running pipeline (this method, or the Rerank that loaded
        it): the stage's top_k, the run's query batch, progress, and the stage's report."""
        started = time.perf_counter()
        out = self.rerank_all(requests, stage.top_k, query_batch=ctx.query_batch,
                              on_done=ctx.progress_for(path, stage))
        record_leaf(ctx, path, stage, started, out)
        return out


def spend(used: Usage, answer):
    """Add the usage a primitive's answer carries to ``used``; return the answer."""
    used.add(usage_of(answer))
    return answer


@dataclass(frozen=True)
class Option:
    """A method option, declared as data: shown by ``rankwise methods show``, checked before building."""

    name: str
    type: type | tuple[type, ...]
    default: Any
    help: str
    choices: tuple = ()

    def check(self, method: str, value: Any) -> None:
        """An InputError naming the method, the option and what it takes, when ``value`` does not fit."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        numeric = float in types and isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not numeric and (not isinstance(value, types) or
                                                  (isinstance(value, bool) and bool not in types)):
            names = "/".join(t.__name__ for t in types)
            raise InputError(f"method {method}: option {self.name} takes a {names}, got {value!r}")
        if self.choices and value not in self.choices:
            raise InputError(f"method {method}: option {self.name} must be one of "
                             f"{', '.join(map(str, self.choices))}, got {value!r}")


GUARD = Option("guard", (bool, int, dict), False,
               "demote candidates that instruct the ranker: true, a number of signals, or {threshold: N}")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    factory: Callable[..., Method]
    needs: str  # the kind of backend: "llm", "embedding", "crossencoder", "attention"
    description: str
    options: tuple[Option, ...] = field(default=())

    def option(self, name: str) -> Option:
        for option in self.options + (GUARD,):
            if option.name == name:
                return option
        valid = ", ".join(o.name for o in self.options + (GUARD,))
        raise InputError(f"method {self.name} has no option {name!r} (its options: {valid})")


_REGISTRY: dict[str, MethodInfo] = {}
# Modules of this package that hold no method; every other module registers its methods on import.
_NOT_METHODS = {"base", "sorting", "permutation", "guard"}


def register(name: str, needs: str, description: str, options: Sequence[Option] = ()):
    """Register a method factory ``factory(backend, **options)`` under ``name`` with its declared options."""
    def wrap(factory):
        _REGISTRY[name] = MethodInfo(name, factory, needs, description, tuple(options))
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
    """Every registered method name (imports no model library)."""
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


def check_options(name: str, options: dict) -> None:
    """Every option is one the method declares, of the declared type; else an InputError naming the valid ones."""
    info = method_info(name)
    for key, value in options.items():
        info.option(key).check(name, value)


def build_method(name: str, backend: Backend, **options) -> Method:
    """Construct a registered method over a backend, e.g. ``build_method("pointwise.yes_no", llm)``;
    an option the method does not declare is an InputError naming the valid ones. ``guard=True`` (any
    method) demotes candidates that instruct the ranker (``rankwise.methods.guard``)."""
    check_options(name, options)
    guard = options.pop("guard", False)
    return _guarded(method_info(name).factory(backend, **options), guard)


def _guarded(method: Method, guard: bool | int | dict) -> Method:
    """``guard``: false (off), true (the default threshold), a number of signals, or {threshold: N}."""
    if guard is False or guard is None:
        return method
    from rankwise.methods.guard import DEFAULT_THRESHOLD, GuardedReranker

    if guard is True:
        return GuardedReranker(method)
    if isinstance(guard, dict) and set(guard) <= {"threshold"}:
        return GuardedReranker(method, guard.get("threshold", DEFAULT_THRESHOLD))
    if isinstance(guard, int):
        return GuardedReranker(method, guard)
    raise InputError(f"option guard must be true, false, a number of signals or {{threshold: N}}, got {guard!r}")

