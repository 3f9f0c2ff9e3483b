"""Stages: the composition algebra every reranker, first stage and pipeline shares (PyTerrier-style).

    FirstStage("bm25") % 100 >> load_reranker("embedding.e2rank", "minilm-l6") % 100
        >> Rerank("pointwise.yes_no", model="qwen2.5-0.5b") % 30

- ``a >> b``: b reorders what a returns (a :class:`Chain`).
- ``stage % k``: a reranking stage reorders only the top k of what it receives; the rest follow in the
  order it received them, so every candidate is kept. A stage that retrieves (a first stage, or a chain
  or fusion that starts with first stages) returns its top k.
- ``a | b`` or ``Fuse(a, b, method="rrf")``: both see the same input; their rankings are fused
  (:mod:`rankwise.fusion`).
- ``Identity()``: the input as it arrives, scores kept. Fused with a reranker it interpolates the previous
  stage's scores with the new ones: ``Fuse(Identity(), Rerank(...), method="interpolate") % 30``.

Every reranking method is a Stage (:class:`rankwise.methods.registry.Method`), so a built reranker composes
directly. The stages that need data or loading (FirstStage, BM25, Rerank by name) live in
:mod:`rankwise.pipeline.stages`; running is :func:`rankwise.pipeline.run`. This module imports neither.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from rankwise.errors import InputError
from rankwise.fusion import RRF_K, check_params, fuse_rankings
from rankwise.types import Candidate, Query, Ranking, Request, Usage

if TYPE_CHECKING:
    from rankwise.pipeline.result import RunResult
    from rankwise.pipeline.run import RunContext

StagePath = tuple[int, ...]


def _check_top_k(top_k: Any, what: str = "top_k") -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"{what} must be a positive integer, got {top_k!r}")


def _call(name: str, *args: Any, **kwargs: Any) -> str:
    parts = [repr(a) if not isinstance(a, Stage) else str(a) for a in args]
    parts += [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def as_request(ranking: Ranking) -> Request:
    """The next stage's input: the ranking's candidates in its order, each carrying this stage's score."""
    return Request(ranking.query, tuple(replace(c, score=s) for c, s in ranking))


class Stage:
    """A step of a pipeline: takes requests (query + candidates), returns one complete Ranking per request."""

    top_k: int | None
    is_source: bool = False  # a first stage: retrieves candidates for queries rather than reordering them
    _own_top_k: bool = False  # True when the stage applies top_k itself (else the head/tail split below)

    # -- composition -------------------------------------------------------------------------------
    def __rshift__(self, other: "Stage") -> "Chain":
        return Chain(self, other)

    def __mod__(self, k: int) -> "Stage":
        _check_top_k(k, "the k of 'stage % k'")
        new = copy.copy(self)
        keep = k if self.is_source or self.top_k is None else min(k, self.top_k)
        object.__setattr__(new, "top_k", keep)
        return new

    def __or__(self, other: "Stage") -> "Fuse":
        if isinstance(self, Fuse) and self.is_plain():
            return Fuse(*self.branches, other)
        return Fuse(self, other)

    # -- printing ----------------------------------------------------------------------------------
    def _expr(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self._expr()} % {self.top_k}" if self.top_k is not None else self._expr()

    __repr__ = __str__

    # -- running -----------------------------------------------------------------------------------
    def leaves(self, path: StagePath = ()) -> Iterator[tuple[StagePath, "Stage"]]:
        """The stages that do work (first stages, rerankers), each with its path, as stage reports name it."""
        yield path, self

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        raise NotImplementedError

    def apply(self, requests: list[Request], ctx: "RunContext", path: StagePath = ()) -> list[Ranking]:
        """One Ranking per request, in the same order; a reranking stage keeps every candidate."""
        if self._own_top_k or self.top_k is None:
            out = self._apply(requests, ctx, path)
        elif self.is_source:  # a first stage (fused, or followed by rerankers) returns its top k
            out = [Ranking(r.query, r.candidates[: self.top_k], r.scores[: self.top_k], r.usage)
                   for r in self._apply(requests, ctx, path)]
        else:
            heads = [Request(r.query, r.candidates[: self.top_k]) for r in requests]
            out = [with_tail(r.query, r.candidates, h, h.usage)
                   for r, h in zip(requests, self._apply(heads, ctx, path))]
        if not self.is_source:
            for request, ranking in zip(requests, out):
                check_complete(request, ranking)
        return out

    def run(self, requests: Sequence[Request] | None = None, **options: Any) -> "RunResult":
        """``rankwise.pipeline.run(self, requests, **options)``: the one way anything is run."""
        from rankwise.pipeline.run import run

        return run(self, requests, **options)

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The pipeline as plain data (``{"pipeline": [stage, ...]}``), as a YAML/JSON file holds it."""
        from rankwise.pipeline.spec import to_dict

        return to_dict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The pipeline as YAML text, also written to ``path`` when given."""
        from rankwise.pipeline.spec import to_yaml

        return to_yaml(self, path)

    @staticmethod
    def from_dict(data: dict) -> "Stage":
        from rankwise.pipeline.spec import from_dict

        return from_dict(data)

    @staticmethod
    def from_yaml(path: str | Path) -> "Stage":
        """Read a pipeline file (YAML or JSON); a bad file is an InputError naming it and the field."""
        from rankwise.pipeline.spec import load_pipeline

        return load_pipeline(path)


def record_leaf(ctx: "RunContext", path: StagePath, stage: Stage, started: float, rankings: list[Ranking]) -> None:
    """Add what a stage that does work spent on these rankings (its usage and seconds) to the run's report."""
    usage = Usage()
    for r in rankings:
        usage.add(r.usage)
    ctx.record(path, stage, usage, time.perf_counter() - started, len(rankings))


def with_tail(query: Query, candidates: Sequence[Candidate], head: Ranking, usage: Usage) -> Ranking:
    """Append the candidates past the reranked head, in their input order, scored below the head."""
    tail = candidates[len(head.candidates):]
    floor = min(head.scores, default=0.0)
    tail_scores = tuple(floor - 1.0 - i for i in range(len(tail)))
    return Ranking(query, head.candidates + tuple(tail), head.scores + tail_scores, usage)


def check_complete(request: Request, ranking: Ranking) -> None:
    """Raise if ``ranking`` does not hold exactly the request's candidates."""
    if sorted(c.docid for c in request.candidates) != sorted(ranking.docids):
        raise RuntimeError(f"method dropped or duplicated candidates for query {request.query.qid}")


@dataclass(frozen=True, repr=False)
class Identity(Stage):
    """The candidates in the order and with the scores they arrive with (PyTerrier's identity transformer):
    a branch of a fusion that keeps the previous stage's scores in the mix."""

    top_k: int | None = None
    _own_top_k = True

    def _expr(self) -> str:
        return "Identity()"

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        return [Ranking(r.query, r.candidates, tuple(c.score for c in r.candidates), Usage()) for r in requests]

    def leaves(self, path: StagePath = ()) -> Iterator[tuple[StagePath, Stage]]:
        yield from ()  # does no work: no stage report


def _sources_first(stages: Sequence[Stage]) -> None:
    for stage in stages[1:]:
        if stage.is_source:
            raise InputError(f"{stage} retrieves candidates: it can only start a pipeline")


@dataclass(frozen=True, repr=False, init=False)
class Chain(Stage):
    """Stages run one after another (``a >> b >> c``); nested chains are flattened (``>>`` associates)."""

    stages: tuple[Stage, ...]
    top_k: int | None = None

    def __init__(self, *stages: Stage, top_k: int | None = None):
        flat: list[Stage] = []
        for stage in stages:
            if not isinstance(stage, Stage):
                raise InputError(f"only stages compose with '>>', got {stage!r}")
            flat.extend(stage.stages if isinstance(stage, Chain) and stage.top_k is None else [stage])
        if len(flat) < 2:
            raise InputError("a chain needs at least two stages")
        _sources_first(flat)
        _check_top_k(top_k)
        object.__setattr__(self, "stages", tuple(flat))
        object.__setattr__(self, "top_k", top_k)

    @property
    def is_source(self) -> bool:  # type: ignore[override]
        return self.stages[0].is_source

    def _expr(self) -> str:
        inner = " >> ".join(str(s) for s in self.stages)
        return f"({inner})" if self.top_k is not None else inner

    def leaves(self, path: StagePath = ()) -> Iterator[tuple[StagePath, Stage]]:
        for i, stage in enumerate(self.stages, 1):
            yield from stage.leaves((*path, i))

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        current, totals = requests, [Usage() for _ in requests]
        rankings: list[Ranking] = []
        for i, stage in enumerate(self.stages, 1):
            rankings = stage.apply(current, ctx, (*path, i))
            for total, ranking in zip(totals, rankings):
                total.add(ranking.usage)
            current = [as_request(r) for r in rankings]
        return [Ranking(r.query, r.candidates, r.scores, total) for r, total in zip(rankings, totals)]


@dataclass(frozen=True, repr=False, init=False)
class Fuse(Stage):
    """Branches that see the same input, their rankings fused: ``Fuse(a, b)`` (RRF, k=60) or
    ``Fuse(a, b, method="interpolate", weights=(0.3, 0.7), norm="zscore")``; also ``a | b``."""

    branches: tuple[Stage, ...]
    method: str = "rrf"
    k: float = RRF_K
    weights: tuple[float, ...] | None = None
    norm: str = "minmax"
    top_k: int | None = None

    def __init__(self, *branches: Stage, method: str = "rrf", k: float = RRF_K,
                 weights: Sequence[float] | None = None, norm: str = "minmax", top_k: int | None = None):
        if len(branches) < 2:
            raise InputError("fusion needs at least two branches")
        for branch in branches:
            if not isinstance(branch, Stage):
                raise InputError(f"only stages can be fused, got {branch!r}")
        if len({b.is_source for b in branches}) > 1:
            raise InputError("fused branches must all start with a first stage, or none of them")
        if weights is not None and not isinstance(weights, (list, tuple)):
            raise InputError(f"fusion weights must be a list of numbers, got {weights!r}")
        check_params(len(branches), method, k, weights, norm)
        _check_top_k(top_k)
        for name, value in (("branches", tuple(branches)), ("method", method), ("k", k),
                            ("weights", tuple(weights) if weights is not None else None), ("norm", norm),
                            ("top_k", top_k)):
            object.__setattr__(self, name, value)

    @property
    def is_source(self) -> bool:  # type: ignore[override]
        return self.branches[0].is_source

    def is_plain(self) -> bool:
        """Default RRF with nothing set: ``a | b | c`` then fuses all three at once."""
        return self.method == "rrf" and self.k == RRF_K and self.weights is None and self.top_k is None

    def _expr(self) -> str:
        params: dict[str, Any] = {}
        if self.method != "rrf":
            params["method"] = self.method
        if self.method == "rrf" and self.k != RRF_K:
            params["k"] = self.k
        if self.weights is not None:
            params["weights"] = self.weights
        if self.method == "interpolate" and self.norm != "minmax":
            params["norm"] = self.norm
        return _call("Fuse", *self.branches, **params)

    def leaves(self, path: StagePath = ()) -> Iterator[tuple[StagePath, Stage]]:
        for j, branch in enumerate(self.branches, 1):
            yield from branch.leaves((*path, j))

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        outs = [branch.apply(requests, ctx, (*path, j)) for j, branch in enumerate(self.branches, 1)]
        return [fuse_rankings(per_query, self.method, k=self.k, weights=self.weights, norm=self.norm)
                for per_query in zip(*outs)]


__all__ = ["Chain", "Fuse", "Identity", "Stage", "as_request", "check_complete", "record_leaf", "with_tail"]
