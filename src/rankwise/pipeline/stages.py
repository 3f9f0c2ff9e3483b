"""The stages that need data or loading: a first stage the dataset ships, BM25 over its documents, and a
reranker named by (method, model, options), loaded when the pipeline runs (once per run, shared between
stages; :class:`rankwise.pipeline.loading.Backends`). A Rerank prints as the expression that builds it and
writes to a YAML file; a reranker built with ``load_reranker`` does too, and both compose the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rankwise.errors import InputError
from rankwise.methods.registry import check_options, method_info
from rankwise.stage import Stage, StagePath, _call, _check_top_k, record_leaf
from rankwise.types import Ranking, Request

if TYPE_CHECKING:
    from rankwise.pipeline.run import RunContext


@dataclass(frozen=True, repr=False)
class FirstStage(Stage):
    """A first-stage run the dataset ships (``"bm25"``, ``"splade_pp_ensemble_distil"``...): its top_k."""

    name: str
    top_k: int | None = None
    is_source = True
    _own_top_k = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"a first stage is named by a string, got {self.name!r}")
        _check_top_k(self.top_k)

    def _expr(self) -> str:
        return _call("FirstStage", self.name)

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        started = time.perf_counter()
        found = {r.query.qid: r for r in ctx.require_dataset(self).requests(self.name, self.top_k)}
        out = []
        for request in requests:
            got = found.get(request.query.qid)
            cands = got.candidates if got is not None else ()
            out.append(Ranking.from_scores(request.query, cands, [c.score for c in cands]))
        record_leaf(ctx, path, self, started, out)
        return out


@dataclass(frozen=True, repr=False)
class BM25(Stage):
    """BM25 (rankwise.retrieve.bm25.BM25Retriever) over the dataset's documents, indexed once per run."""

    k1: float = 0.9
    b: float = 0.4
    top_k: int = 100
    is_source = True
    _own_top_k = True

    def __post_init__(self) -> None:
        _check_top_k(self.top_k)
        for name in ("k1", "b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"BM25 {name} must be a number >= 0, got {value!r}")

    def _expr(self) -> str:
        params = {k: v for k, v in (("k1", self.k1), ("b", self.b)) if v != getattr(BM25, k)}
        return _call("BM25", **params)

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        from rankwise.data import requests_from_run

        ds = ctx.require_dataset(self)
        started = time.perf_counter()
        retriever = ctx.bm25(self.k1, self.b)
        queries = {r.query.qid: r.query.text for r in requests}
        found = {r.query.qid: r for r in requests_from_run(retriever.retrieve(queries, self.top_k), queries, ds.docs)}
        out = []
        for request in requests:
            cands = found[request.query.qid].candidates if request.query.qid in found else ()
            out.append(Ranking.from_scores(request.query, cands, [c.score for c in cands]))
        record_leaf(ctx, path, self, started, out)
        return out


@dataclass(frozen=True, repr=False, init=False)
class Rerank(Stage):
    """Rerank with a registered method on a model, e.g. ``Rerank("pointwise.yes_no", model="qwen2.5-0.5b")``;
    keyword options go to the method (``k=10``, ``max_passage_tokens=128``...), ``backend_options`` to the
    engine (``batch_size``...). Unknown methods and options fail here, before anything loads."""

    method: str
    model: str
    top_k: int | None = None
    engine: str = "auto"
    dtype: str = "auto"
    options: dict = field(default_factory=dict)
    backend_options: dict = field(default_factory=dict)
    _own_top_k = True

    def __init__(self, method: str, model: str | None = None, *, top_k: int | None = None, engine: str = "auto",
                 dtype: str = "auto", backend_options: dict | None = None, **options: Any):
        if not isinstance(method, str):
            raise InputError(f"Rerank takes a method name (a built reranker is a stage itself), got {method!r}")
        method_info(method)  # an unknown name fails here, naming close ones
        if not isinstance(model, str) or not model:
            raise InputError(f"Rerank({method!r}) needs a model name")
        _check_top_k(top_k)
        for name, value in (("engine", engine), ("dtype", dtype)):
            if not isinstance(value, str):
                raise InputError(f"Rerank {name} must be a string, got {value!r}")
        if not isinstance(backend_options or {}, dict):
            raise InputError(f"Rerank backend_options must be a mapping, got {backend_options!r}")
        check_options(method, dict(options))
        for name, value in (("method", method), ("model", model), ("top_k", top_k), ("engine", engine),
                            ("dtype", dtype), ("options", dict(options)),
                            ("backend_options", dict(backend_options or {}))):
            object.__setattr__(self, name, value)

    @property
    def method_name(self) -> str:
        return self.method

    def _expr(self) -> str:
        params: dict[str, Any] = {"model": self.model}
        params.update({k: v for k, v in (("engine", self.engine), ("dtype", self.dtype)) if v != "auto"})
        if self.backend_options:
            params["backend_options"] = self.backend_options
        return _call("Rerank", self.method, **params, **self.options)

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        return ctx.reranker(self).apply_as(self, requests, ctx, path)


def split_first_stage(pipeline: Stage) -> tuple[Stage, Stage]:
    """A pipeline that starts with a first stage, as (that first stage, the rest). The rest is
    ``Identity()`` for a pipeline that is only a first stage. Fused first stages cannot be split off."""
    from rankwise.stage import Chain, Identity

    if not pipeline.is_source:
        raise InputError(f"{pipeline} has no first stage to replace")
    if isinstance(pipeline, (FirstStage, BM25)):
        return pipeline, Identity()
    if isinstance(pipeline, Chain) and isinstance(pipeline.stages[0], (FirstStage, BM25)):
        first, rest = pipeline.stages[0], pipeline.stages[1:]
        if len(rest) > 1:
            return first, Chain(*rest, top_k=pipeline.top_k)
        return first, rest[0] if pipeline.top_k is None else rest[0] % pipeline.top_k
    raise InputError(f"{pipeline} starts with several fused first stages; only a single first stage can be "
                     "replaced by given candidates")


__all__ = ["BM25", "FirstStage", "Rerank", "split_first_stage"]
