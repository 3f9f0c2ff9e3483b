"""PyTerrier interop (``pip install 'rankwise[pyterrier]'``): rankwise stages as ``pt.Transformer`` and back.

    import pyterrier as pt
    from rankwise.pipeline import load_reranker
    from rankwise.pyterrier import RankwiseTransformer

    reranker = RankwiseTransformer(load_reranker("pointwise.yes_no", "smollm2-135m") % 10)
    pt.Experiment([bm25, bm25 >> reranker], topics, qrels, eval_metrics=["nDCG@10"])

A reranking stage reads a result frame (``qid, query, docno, text`` and optionally ``title, score, rank``) and
returns it reordered with the method's scores (strictly decreasing, as ``RunResult.run()`` writes them) and
0-based ranks; other columns ride along. A stage that retrieves (``FirstStage("bm25") >> ...``) reads a
query frame (``qid, query``) and needs the ``dataset`` it retrieves from. ``PyTerrierStage(transformer)``
goes the other way: a PyTerrier retriever as a rankwise first stage. Every run goes through
:func:`rankwise.pipeline.run`. PyTerrier needs no Java for any of this (only its Terrier indexes do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from rankwise.errors import InputError
from rankwise.stage import Stage, StagePath, record_leaf
from rankwise.types import Candidate, Query, Ranking, Request, Usage

try:
    import pandas as pd
    import pyterrier as pt
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("rankwise.pyterrier needs PyTerrier: pip install 'rankwise[pyterrier]'") from err

if TYPE_CHECKING:
    from rankwise.data import Dataset
    from rankwise.pipeline import Backends, RunResult
    from rankwise.pipeline.run import RunContext

RESULT_COLUMNS = ("qid", "query", "docno", "text")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"(has {', '.join(map(str, frame.columns)) or 'none'})")


def requests_from_frame(frame: pd.DataFrame, text: str = "text") -> list[Request]:
    """One Request per qid (in order of first appearance), candidates by ``rank`` if present, else by
    descending ``score``, else in row order. A ``title`` column is kept as the candidates' title."""
    _require(frame, ("qid", "query", "docno", text), "the PyTerrier result frame")
    rows = frame.reset_index(drop=True)
    rows = rows.assign(_row=range(len(rows)))
    order = (["rank"] if "rank" in rows else ["score"] if "score" in rows else []) + ["_row"]
    ascending = [key != "score" for key in order]
    requests = []
    for qid, group in rows.groupby("qid", sort=False):
        group = group.sort_values(order, ascending=ascending, kind="stable")
        queries = group["query"].unique()
        if len(queries) > 1:
            raise InputError(f"query {qid} has {len(queries)} different texts in the 'query' column")
        if group["docno"].duplicated().any():
            raise InputError(f"query {qid} lists docno {group['docno'][group['docno'].duplicated()].iloc[0]} twice")
        candidates = tuple(
            Candidate(str(row["docno"]), str(row[text]), float(row["score"]) if "score" in group else 0.0,
                      str(row["title"]) if "title" in group and isinstance(row["title"], str) else "")
            for _, row in group.iterrows())
        requests.append(Request(Query(str(qid), str(queries[0])), candidates))
    return requests


def frame_from_result(result: "RunResult", original: pd.DataFrame | None = None,
                      text: str = "text") -> pd.DataFrame:
    """The rankings as a result frame: ``qid, query, docno, text, score, rank`` (0-based), the scores of
    ``result.run()``; columns of ``original`` that these lack are joined back on (qid, docno)."""
    run = result.run()
    rows = [{"qid": qid, "query": ranking.query.text, "docno": c.docid, text: c.text, "score": run[qid][c.docid],
             "rank": rank}
            for qid, ranking in result.rankings.items() for rank, c in enumerate(ranking.candidates)]
    frame = pd.DataFrame(rows, columns=["qid", "query", "docno", text, "score", "rank"])
    if original is not None:
        extra = [c for c in original.columns if c not in frame.columns]
        if extra:
            keys = original[["qid", "docno", *extra]].astype({"qid": str, "docno": str})
            frame = frame.merge(keys, on=["qid", "docno"], how="left")
    return frame


class RankwiseTransformer(pt.Transformer):
    """A rankwise stage (a reranker, or a pipeline) as a PyTerrier transformer, run by ``rankwise.pipeline.run``.

    ``backends`` shares loaded models between transformers; ``cache``, ``query_batch`` are ``run``'s options.
    """

    def __init__(self, stage: Stage, *, dataset: "Dataset | str | None" = None, text: str = "text",
                 backends: "Backends | None" = None, cache: bool = True, query_batch: int = 1):
        if not isinstance(stage, Stage):
            raise InputError(f"RankwiseTransformer wraps a rankwise stage, got {type(stage).__name__}")
        from rankwise.pipeline import Backends

        self.stage, self.dataset, self.text = stage, dataset, text
        self.backends = backends if backends is not None else Backends(cache)
        self.query_batch = query_batch
        self.last_result: "RunResult | None" = None  # the latest run: usage per stage and query

    def __repr__(self) -> str:
        return f"RankwiseTransformer({self.stage})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        from rankwise.pipeline import run

        if self.stage.is_source:
            _require(inp, ("qid", "query"), "the PyTerrier query frame")
            queries = [Query(str(q), str(t)) for q, t in inp[["qid", "query"]].drop_duplicates("qid").values]
            result = run(self.stage, queries=queries, dataset=self.dataset, backends=self.backends,
                         query_batch=self.query_batch)
        else:
            result = run(self.stage, requests_from_frame(inp, self.text), backends=self.backends,
                         query_batch=self.query_batch)
        self.last_result = result
        return frame_from_result(result, None if self.stage.is_source else inp, self.text)


@dataclass(frozen=True, repr=False)
class PyTerrierStage(Stage):
    """A PyTerrier retriever (queries in, a result frame with ``text`` out) as a rankwise first stage:
    ``PyTerrierStage(bm25 >> pt.text.get_text(dataset, "text")) % 100 >> load_reranker(...)``."""

    transformer: Any
    name: str = "pyterrier"
    text: str = "text"
    top_k: int | None = None
    is_source = True

    def _expr(self) -> str:
        return f"PyTerrierStage({self.name!r})"

    def _apply(self, requests: list[Request], ctx: "RunContext", path: StagePath) -> list[Ranking]:
        started = time.perf_counter()
        queries = pd.DataFrame({"qid": [r.query.qid for r in requests], "query": [r.query.text for r in requests]})
        by_qid = {r.query.qid: r for r in requests_from_frame(self.transformer.transform(queries), self.text)}
        rankings = []
        for request in requests:
            found = by_qid.get(request.query.qid, Request(request.query, ()))
            rankings.append(Ranking(request.query, found.candidates, tuple(c.score for c in found.candidates),
                                    Usage()))
        record_leaf(ctx, path, self, started, rankings)
        return rankings


__all__ = ["PyTerrierStage", "RankwiseTransformer", "frame_from_result", "requests_from_frame"]
