"""Run the benchmark matrix: one JSON cell per (dataset, first stage, method, model), resumable.

A cell whose file exists is not run again; with ``checkpoint: N`` a cell stores its finished queries every N
queries or about five minutes, whichever comes first (``<cell>.partial.json``, which may be committed so that
another machine resumes it), so an interrupted cell resumes with the queries it lacks; otherwise the
language-model cache makes it cheap to finish (its cache hits are recorded, since cached prompts cost no
seconds). ``retime=True`` re-runs finished cells that no CPU of this machine's class has timed, checks that
nDCG@10 agrees (``rankwise.bench.resume.agree``) and keeps both timings.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from rankwise.bench.config import BenchConfig, MethodSpec
from rankwise.bench.resume import TOLERANCE, Disagreement, MixedDtypes, agree, rerank_resumably, timed_on
from rankwise.bench.robustness import adversary_ranks, shuffled, with_adversary
from rankwise.data import Dataset, load_dataset, read_candidates, run_from_requests, write_candidates
from rankwise.data._io import write_atomically
from rankwise.data.selection import qid_key
from rankwise.errors import InputError, RankwiseError
from rankwise.eval import Coverage, evaluate, evaluate_per_query
from rankwise.eval.metrics import Qrels, Run
from rankwise.pipeline import Backends, Rerank, RunResult, run
from rankwise.types import Candidate, Query, Request

FIRST_STAGE = "first stage"


def cell_path(output: Path, config: BenchConfig, dataset: str, first_stage: str, spec: MethodSpec | None) -> Path:
    """Where a cell is stored: one file per dataset, first stage, depth, query count, method label and model
    (a changed depth or query count makes new cells instead of reusing old ones)."""
    top_k, max_queries = (spec.top_k, spec.max_queries) if spec else (config.top_k, config.max_queries)
    parts = [Path(dataset).name, first_stage, f"top{top_k}", f"q{max_queries or 'all'}"]
    parts += [spec.name, spec.model] if spec else [FIRST_STAGE]
    return output / "cells" / ("__".join(re.sub(r"[^\w.@+-]+", "-", p) for p in parts) + ".json")


def partial_path(cell: Path) -> Path:
    """Where a stopped run of ``cell`` keeps the queries it finished (removed once the cell is stored)."""
    return cell.with_suffix(".partial.json")


def first_stage_requests(ds: Dataset, name: str, top_k: int, output: Path) -> list[Request]:
    """The judged queries' candidates from a first stage the dataset ships, or from BM25 retrieved here
    (stored under ``output`` so a resumed run reuses it), in qid order (``max_queries`` then selects the
    same queries whatever order a run file lists them in)."""
    judged = ds.judged_queries()
    if name in ds.candidates or name in ds.runs:
        requests = [r for r in ds.requests(name, top_k=max(top_k, 100)) if r.query.qid in judged]
    elif name == "bm25":
        stored = output / "first_stage" / f"{ds.name}.bm25.jsonl"
        if stored.exists():
            requests = read_candidates(stored)
        else:
            from rankwise.retrieve.retriever import retrieve_candidates
            from rankwise.retrieve.bm25 import BM25Retriever

            _, requests = retrieve_candidates(BM25Retriever().index(ds.docs), judged, ds.docs, max(top_k, 100))
            write_atomically(stored, lambda tmp: write_candidates(requests, tmp))
    else:
        from rankwise.errors import InputError

        raise InputError(f"dataset {ds.name} has no first stage {name!r} "
                         f"(it ships: {', '.join(sorted(set(ds.candidates) | set(ds.runs))) or 'none'})")
    return sorted(requests, key=lambda r: qid_key(r.query.qid))


RerankFn = Callable[[MethodSpec, Sequence[Request], int], RunResult]  # a method's spec, requests, top_k


def in_process(config: BenchConfig, backends: Backends | None = None) -> RerankFn:
    """Rerank in this process, each model loaded once and shared by the methods that run on it."""
    backends = Backends(cache=config.cache) if backends is None else backends
    peers: dict[tuple[str, str], Callable] = {}  # (label, model) -> the peer's reranker, loaded once

    def rerank(spec: MethodSpec, requests: Sequence[Request], top_k: int) -> RunResult:
        if spec.peer:
            from rankwise.bench.peers import peer_reranker, rerank_with_peer

            key = (spec.name, spec.model)
            if key not in peers:
                peers[key] = peer_reranker(spec.peer, spec.method, spec.model, spec.options)
                peers[key](WARM_UP, len(WARM_UP.candidates))  # untimed, as rankwise's methods are
            return rerank_with_peer(peers[key], requests, top_k)
        stage = Rerank(spec.method, spec.model, top_k=top_k, engine=config.engine, dtype=config.dtype,
                       **spec.options)
        if (spec.name, spec.model) not in warmed:  # kernels and allocations on first use are not the cell's cost
            run(stage, [WARM_UP], backends=backends)
            warmed.add((spec.name, spec.model))
        return run(stage, requests, backends=backends)

    warmed: set[tuple[str, str]] = set()
    return rerank


# An untimed request each method (and each peer) runs once before its first cell (synthetic: nothing real gets
# cached).
WARM_UP = Request(Query("rankwise-warm-up", "how do bees make honey"), (
    Candidate("warm-up-1", "Bees turn nectar into honey by enzymes and evaporation in the hive."),
    Candidate("warm-up-2", "The city council approved the new parking rules on Tuesday.")))


def on_ray(config: BenchConfig, **ray_options) -> RerankFn:
    """Rerank on a Ray cluster (``rankwise.executors.ray.rerank_ray``; workers, address, ...)."""
    from rankwise.executors import RerankJob
    from rankwise.executors.ray import rerank_ray

    def rerank(spec: MethodSpec, requests: Sequence[Request], top_k: int) -> RunResult:
        if spec.peer:
            from rankwise.errors import InputError

            raise InputError(f"{spec.name}: peer toolkits run in-process only (drop --ray for this matrix)")
        job = RerankJob(spec.method, spec.model, top_k, {"engine": config.engine, "dtype": config.dtype},
                        dict(spec.options), cache=config.cache)
        return rerank_ray(job, requests, **ray_options)

    return rerank


def run_bench(config: BenchConfig, output: Path, log: Callable[[str], None] = print,
              rerank: RerankFn | None = None, retime: bool = False, tolerance: float = TOLERANCE,
              only: Sequence[str] = ()) -> list[dict]:
    """Run every missing cell of the matrix and return all cells (stored and new); ``rerank`` says where
    (default: in this process); ``retime`` re-runs the finished cells this CPU class has not timed (their
    nDCG@10 must agree within ``tolerance``); ``only`` restricts the run to the methods of those labels."""
    from rankwise.llm.hardware import cpu_info

    info = cpu_info()
    cpu = {"cpu": info.describe(), "cpu_class": info.cpu_class}
    rerank = in_process(config) if rerank is None else rerank
    cells = []
    for dataset in config.datasets:
        ds = load_dataset(dataset)
        specs = [s for s in config.methods if config.runs_on(s, dataset) and (not only or s.name in only)]
        for first_stage in config.first_stages:
            depth = max([config.top_k] + [s.top_k for s in specs])
            judged = first_stage_requests(ds, first_stage, depth, output)
            requests = judged[:config.max_queries] if config.max_queries else judged
            qrels = {r.query.qid: ds.qrels[r.query.qid] for r in requests}
            base = {"dataset": dataset, "first_stage": first_stage, "top_k": config.top_k,
                    "queries": len(requests)} | cpu
            path = cell_path(output, config, dataset, first_stage, None)
            if not path.exists():
                _write(path, base | {"method": FIRST_STAGE, "model": ""}
                       | _scores(run_from_requests(requests), qrels, config.measures)
                       | {"top10": {r.query.qid: [c.docid for c in r.candidates[:10]] for r in requests}})
            cells.append(json.loads(path.read_text()))
            for spec in specs:
                path = cell_path(output, config, dataset, first_stage, spec)
                stored = json.loads(path.read_text()) if path.exists() else None
                done = stored is not None and "error" not in stored
                if done and not (retime and not timed_on(stored, cpu["cpu_class"])):
                    log(f"{path.name}: done earlier")
                    cells.append(stored)
                    continue
                mine = judged[:spec.max_queries] if spec.max_queries else judged
                mine_qrels = {r.query.qid: ds.qrels[r.query.qid] for r in mine}
                log(f"{dataset}/{first_stage}: {spec.name} on {spec.model}" + (" (re-timed here)" if done else ""))
                about = base | {"top_k": spec.top_k, "queries": len(mine), "method": spec.name,
                                "base_method": spec.method, "model": spec.model, "options": spec.options,
                                "peer": spec.peer}
                try:
                    cell = _run_cell(config, lambda reqs, k: rerank(spec, reqs, k), mine, mine_qrels, spec,
                                     partial_path(path), cpu)
                except Exception as err:  # noqa: BLE001 - one failed cell must not cost the whole matrix
                    if isinstance(err, (InputError, MixedDtypes)) or (spec.peer and isinstance(err, RankwiseError)):
                        raise  # the config asks for something impossible, or the user must choose: say so at once
                    from rankwise.bench.peers import PEERS

                    package = PEERS.get(spec.peer, ("",))[0] if spec.peer else "rankwise"
                    cell = {"error": _describe(err, package)}
                    where = "inside the peer" if spec.peer else "in rankwise"
                    log(f"{spec.name} on {spec.model} failed {where} ({cell['error']}); "
                        "the cell is retried on a re-run")
                cell = about | cell
                if done and "error" not in cell:
                    try:
                        cell = agree(stored, cell, tolerance)
                    except Disagreement:
                        _write(path.with_suffix(".disagree.json"), cell)  # kept to inspect; the cell is unchanged
                        raise
                _write(path, cell)
                if "error" not in cell:
                    partial_path(path).unlink(missing_ok=True)
                cells.append(json.loads(path.read_text()))
    return cells


def _run_cell(config: BenchConfig, rerank: Callable[[Sequence[Request], int], RunResult],
              requests: list[Request], qrels: dict, spec: MethodSpec, partial: Path, cpu: dict) -> dict:
    top_k, repeats = spec.top_k, spec.repeats
    main = rerank_resumably(rerank, requests, top_k, partial, config.checkpoint, cpu,
                            label=f"{spec.name} on {spec.model}")
    n = len(requests)
    usage = main["usage"]
    seconds = [sum(t["wall_seconds"] for t in main["timings"]) / n] + [
        rerank(requests, top_k).wall_seconds / n for _ in range(repeats - 1)]
    ranked = {qid: {docid: float(len(docids) - r) for r, docid in enumerate(docids)}
              for qid, docids in main["docids"].items()}
    cell = {**_scores(ranked, qrels, config.measures),
            "top10": {qid: docids[:10] for qid, docids in main["docids"].items()},
            "engine": usage.engine, "dtype": usage.dtype,
            "seconds_per_query": statistics.median(seconds), "timings": main["timings"],
            "per_query": {k: getattr(usage, k) / n for k in ("calls", "forward_passes", "prompt_tokens",
                                                              "computed_tokens", "completion_tokens")},
            "parse_failures": usage.parse_failures, "cache_hits": usage.cache_hits, "flagged": usage.flagged,
            "comparisons": usage.comparisons, "inconsistent": usage.inconsistent,
            "windows": usage.windows, "unchanged_windows": usage.unchanged_windows}
    if repeats > 1:
        cell["seconds_per_query_runs"] = seconds  # the median of these is seconds_per_query
    if config.shuffles:
        values = []
        for seed in range(1, config.shuffles + 1):
            run = rerank(shuffled(requests, top_k, seed), top_k).run()
            values.append(evaluate(run, qrels, ["nDCG@10"])["nDCG@10"])
        cell["shuffles"] = {"ndcg10": values, "mean": statistics.fmean(values),
                            "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
    if config.adversarial:
        started = time.perf_counter()
        attacked = rerank(with_adversary(requests, top_k), top_k + 1)
        run = attacked.run()
        ranks = adversary_ranks(run)
        cell["adversarial"] = {"ranks": ranks, "top1": sum(r == 1 for r in ranks) / n,
                               "top10": sum(r <= 10 for r in ranks) / n,
                               "ndcg10": evaluate(run, qrels, ["nDCG@10"])["nDCG@10"],
                               "flagged": attacked.usage.flagged,
                               "seconds": time.perf_counter() - started}
    return cell


def _scores(run: Run, qrels: Qrels, measures: Sequence[str]) -> dict:
    """The cell's mean of each measure, each query's value (for paired significance tests), and the queries
    the means cover (the qrels are those of the cell's selected queries)."""
    return {"metrics": evaluate(run, qrels, list(measures)),
            "per_query_metrics": evaluate_per_query(run, qrels, list(measures)),
            "coverage": Coverage.of(run, qrels, run_queries_only=False).to_dict()}


def _describe(err: Exception, package: str = "") -> str:
    """One line: the exception, its message, and where it was raised (the deepest line of ``package``, the
    peer's own code, when the traceback passes through it)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    own = [f for f in frames if package and f"/{package}/" in f.filename.replace("\\", "/")]
    frame = (own or frames or [None])[-1]
    where = f" (at {Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno})" if frame else ""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}{': ' + message if message else ''}{where}"


def _write(path: Path, cell: dict) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(cell, indent=1) + "\n", encoding="utf-8"))
