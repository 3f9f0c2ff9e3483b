"""What makes a cell resumable and checkable across machines: its finished queries stored while it runs, the
timings of every CPU class that ran it, and the check that a re-run on another class agrees on nDCG@10."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from rankwise.bench import contention
from rankwise.errors import RankwiseError
from rankwise.pipeline import RunResult
from rankwise.types import Request, Usage

TOLERANCE = 0.002  # the nDCG@10 (mean over the cell's queries) two CPU classes may differ by: numerical noise
BLOCK_SECONDS = 300.0  # a block of a checkpointed cell is cut short so that it takes about this long at most


class Disagreement(RankwiseError):
    """A cell re-run on another CPU class scored differently from the stored one."""


class MixedDtypes(RankwiseError):
    """A stopped cell would resume in another dtype than its stored queries were computed in."""


def rerank_resumably(rerank: Callable[[Sequence[Request], int], RunResult], requests: Sequence[Request],
                     top_k: int, partial: Path, every: int | None, cpu: dict, label: str = "") -> dict:
    """Rerank ``requests`` in blocks of at most ``every`` queries (all at once when None), storing each finished
    query's order and usage in ``partial`` after every block, so a stopped cell resumes with the queries it
    lacks; returns ``{"docids": {qid: order}, "usage": Usage, "timings": [...]}`` for all of them.
    The first block is one query; later blocks hold as many queries as the ones before took in
    :data:`BLOCK_SECONDS` (at least one), so a stop loses minutes, not the hours of five slow queries.
    A progress bar named ``label`` counts the cell's queries (the stored ones included)."""
    done = json.loads(partial.read_text(encoding="utf-8")) if partial.exists() else {"queries": {}, "timed": []}
    todo = [r for r in requests if r.query.qid not in done["queries"]]
    step, start = (1 if every else max(len(todo), 1)), 0
    with tqdm(total=len(requests), initial=len(requests) - len(todo), desc=label or partial.stem, unit="query",
              leave=False) as bar:
        while start < len(todo):
            before = contention.snapshot()
            result = rerank(todo[start:start + step], top_k)
            others = contention.other_cores(before, contention.snapshot())
            _check_dtype(done["queries"], result, partial)
            for qid, ranking in result.rankings.items():
                done["queries"][qid] = {"docids": ranking.docids, "usage": ranking.usage.to_dict()}
            done["timed"].append(cpu | {"queries": len(result.rankings), "wall_seconds": result.wall_seconds,
                                        "load": _load(), "cores": os.cpu_count() or 0}
                                 | ({} if others is None else {"other_cores": round(others, 3)}))
            start += step
            bar.update(len(result.rankings))
            if every:
                _write(partial, done)
                step = _next_block(every, result.wall_seconds / max(len(result.rankings), 1))
    usage = Usage()
    for request in requests:
        usage.add(Usage.from_dict(done["queries"][request.query.qid]["usage"]))
    return {"docids": {r.query.qid: done["queries"][r.query.qid]["docids"] for r in requests}, "usage": usage,
            "timings": _timings(done["timed"], usage)}


def _next_block(every: int, seconds_per_query: float) -> int:
    """How many queries the next block holds: ``every``, or fewer when that many would take more than
    :data:`BLOCK_SECONDS` at ``seconds_per_query``."""
    if seconds_per_query <= 0:
        return every
    return max(1, min(every, int(BLOCK_SECONDS // seconds_per_query)))


def _check_dtype(stored: dict, result: RunResult, partial: Path) -> None:
    """Raise MixedDtypes when ``result`` was computed in another dtype than the ``stored`` queries of the
    cell: bf16 and fp32 rank differently, and a cell's nDCG@10 must come from one of them."""
    had = {q["usage"].get("dtype") for q in stored.values()} - {None, ""}
    new = {r.usage.dtype for r in result.rankings.values()} - {None, ""}
    if had and new and had != new:
        raise MixedDtypes(f"{partial.name}: its {len(stored)} stored queries were computed in {', '.join(sorted(had))}, "
                          f"this machine computes {', '.join(sorted(new))} (dtype auto: bf16 only where the CPU runs it "
                          "natively); one cell must come from one dtype. Resume it where that dtype runs, set the "
                          "bench's backend dtype, or delete the partial file to start the cell over here.")


def _load() -> float:
    """The one-minute load average (0 where the system has none): a timing taken on a busy machine says so."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _timings(blocks: list[dict], usage: Usage) -> list[dict]:
    """One timing per CPU that ran blocks of the cell: its queries, seconds per query, the highest load
    average seen at the end of a block and, where measured, the most cores other processes kept busy during a
    block (``other_cores``; more than :data:`contention.SHARED_CORES`: the seconds are inflated)."""
    out: dict[str, dict] = {}
    for block in blocks:
        t = out.setdefault(block["cpu"], {"cpu": block["cpu"], "cpu_class": block["cpu_class"], "queries": 0,
                                          "wall_seconds": 0.0, "engine": usage.engine, "dtype": usage.dtype,
                                          "load": 0.0, "cores": block.get("cores", 0)})
        t["queries"] += block["queries"]
        t["wall_seconds"] += block["wall_seconds"]
        t["load"] = max(t["load"], block.get("load", 0.0))
        if "other_cores" in block:
            t["other_cores"] = max(t.get("other_cores", 0.0), block["other_cores"])
    return [t | {"seconds_per_query": t["wall_seconds"] / t["queries"]} for t in out.values() if t["queries"]]


def timings(cell: dict) -> list[dict]:
    """The cell's timings, one per CPU that ran it (a cell from before timings were kept: its one CPU)."""
    if "timings" in cell:
        return cell["timings"]
    return [{"cpu": cell.get("cpu", ""), "cpu_class": cell.get("cpu_class", ""), "queries": cell.get("queries", 0),
             "seconds_per_query": cell.get("seconds_per_query", 0.0)}]


def timed_on(cell: dict, cpu_class: str) -> bool:
    """Whether a CPU of ``cpu_class`` has timed every query of the cell."""
    return any(t.get("cpu_class") == cpu_class and t.get("queries") == cell.get("queries") for t in timings(cell))


def agree(stored: dict, fresh: dict, tolerance: float = TOLERANCE) -> dict:
    """The stored cell with the fresh run's timings added, when both give the same nDCG@10 within
    ``tolerance``; the queries whose top 10 changed are counted. Raises :class:`Disagreement` otherwise."""
    old, new = stored["metrics"]["nDCG@10"], fresh["metrics"]["nDCG@10"]
    per_old, per_new = stored["per_query_metrics"], fresh["per_query_metrics"]
    moved = sorted(((abs(per_new[q]["nDCG@10"] - per_old[q]["nDCG@10"]), q) for q in per_old if q in per_new),
                   reverse=True)
    if abs(new - old) > tolerance or set(per_old) != set(per_new):
        worst = ", ".join(f"{q} {d:+.4f}" for d, q in moved[:3] if d > 0)
        dtypes = (stored.get("dtype"), fresh.get("dtype"))
        why = (f"; it was computed in {dtypes[0]} there and {dtypes[1]} here (dtype auto: bf16 only where the CPU "
               "computes it natively), which moves rankings by more than numerical noise: re-time it on a CPU "
               f"that runs {dtypes[0]}, or set the bench's backend dtype to {dtypes[0]}"
               if None not in dtypes and dtypes[0] != dtypes[1] else "")
        raise Disagreement(f"{stored['dataset']}/{stored['method']} on {stored['model']}: nDCG@10 {new:.4f} on "
                           f"{fresh['cpu']} against {old:.4f} stored from {stored['cpu']} (tolerance {tolerance}); "
                           f"queries that moved most: {worst or 'none'}{why}")
    changed = sum(stored.get("top10", {}).get(q) != docids for q, docids in fresh.get("top10", {}).items())
    check = {"cpu": fresh["cpu"], "cpu_class": fresh["cpu_class"], "nDCG@10": new, "top10_changed": changed,
             "largest_query_change": moved[0][0] if moved else 0.0}
    return stored | {"timings": timings(stored) + fresh["timings"], "reruns": stored.get("reruns", []) + [check]}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    tmp.replace(path)
