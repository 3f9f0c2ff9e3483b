"""``rankwise retrieve``, ``rankwise evaluate`` and ``rankwise compare``."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app
from rankwise.cli.common import guard_output
from rankwise.errors import InputError

err = Console(stderr=True)

DEFAULT_METRICS = ["nDCG@10", "RR@10", "R@100"]
_METRICS_FLAGS = ("--metrics", "-m")
_MEASURE = re.compile(r"^[^\W\d]\w*(?:\([^()]*\))?(?:@\w+)?$")
_MEASURE_SEP = re.compile(r"[\s,]+(?![^()]*\))")
_METRICS_HELP = ("Measures in ir-measures syntax (nDCG@10, RR(rel=2)@10, R@100, AP), several after one flag "
                 "(--metrics nDCG@10 RR@10) or comma-separated, or the flag repeated.")


def _measure_like(token: str) -> bool:
    parts = [p for p in _MEASURE_SEP.split(token) if p]
    return bool(parts) and all(_MEASURE.match(p) for p in parts)


def gather_metrics(args: list[str]) -> list[str]:
    """Join the values after ``--metrics`` into one argument: its first value, then every following
    token shaped like a measure (so ``--metrics nDCG@10 RR@10 R@100`` works as written)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        out.append(token)
        i += 1
        if token == "--":
            out.extend(args[i:])
            break
        if token in _METRICS_FLAGS and i < len(args) and not args[i].startswith("-"):
            values = [args[i]]
            i += 1
            while i < len(args) and _measure_like(args[i]):
                values.append(args[i])
                i += 1
            out.append(" ".join(values))
    return out


class MetricsCommand(typer.core.TyperCommand):
    """A command whose ``--metrics`` option takes several space-separated values."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, gather_metrics(list(args)))


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _coverage_note(run: dict, qrels: dict, run_queries_only: bool) -> None:
    """Say on stderr which queries the averages cover when run and qrels differ."""
    unjudged = sum(1 for qid in run if qid not in qrels)
    missing = sum(1 for qid in qrels if qid not in run)
    if unjudged:
        err.print(f"note: {unjudged} run queries have no qrels and are not evaluated")
    if missing:
        what = "left out (--run-queries-only)" if run_queries_only else "count as 0"
        err.print(f"note: {missing} qrels queries are missing from the run and {what}")


@app.command(cls=MetricsCommand)
def evaluate(
    run: Path = typer.Option(..., help="TREC run file (plain or .gz)."),
    qrels: Path = typer.Option(..., help="TREC qrels (qid iter docid grade) or BEIR qrels TSV."),
    metrics: list[str] = typer.Option(DEFAULT_METRICS, *_METRICS_FLAGS, help=_METRICS_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else."),
    per_query: bool = typer.Option(False, "--per-query", help="Also give each query's values."),
    run_queries_only: bool = typer.Option(False, "--run-queries-only",
                                          help="Average over the run's queries only (default: every "
                                               "qrels query, missing ones as 0, as trec_eval -c)."),
) -> None:
    """Score a run against qrels (averaged over every qrels query; a query missing from the run is 0)."""
    from rankwise.data import read_qrels, read_run
    from rankwise.eval import evaluate as evaluate_run
    from rankwise.eval import evaluate_per_query, parse_measures, split_measures

    parse_measures(metrics)  # fail on a bad measure before reading any file
    names = split_measures(metrics)
    run_d, qrels_d = read_run(run), read_qrels(qrels)
    scores = evaluate_run(run_d, qrels_d, names, run_queries_only=run_queries_only)
    rows = evaluate_per_query(run_d, qrels_d, names, run_queries_only=run_queries_only) if per_query else {}
    _coverage_note(run_d, qrels_d, run_queries_only)
    if json_output:
        result: dict = {k: _round(v) for k, v in scores.items()}
        if per_query:
            result = {"aggregate": result,
                      "per_query": {q: {k: _round(v) for k, v in row.items()} for q, row in rows.items()}}
        typer.echo(json.dumps(result))
        return
    evaluated = sum(1 for q in qrels_d if not run_queries_only or q in run_d)
    out = Console()
    out.print(f"{run} against {qrels}: {evaluated} queries")
    table = Table()
    table.add_column("query" if per_query else "measure")
    if per_query:
        for name in names:
            table.add_column(name, justify="right")
        for qid, row in rows.items():
            table.add_row(qid, *(f"{row[n]:.4f}" for n in names))
        table.add_row("all", *(f"{scores[n]:.4f}" for n in names), style="bold")
    else:
        table.add_column("value", justify="right")
        for name, value in scores.items():
            table.add_row(name, f"{value:.4f}")
    out.print(table)


@app.command(cls=MetricsCommand)
def compare(
    run_a: Path = typer.Argument(..., help="Baseline TREC run (A)."),
    run_b: Path = typer.Argument(..., help="TREC run compared with it (B)."),
    qrels: Path = typer.Option(..., help="TREC qrels or BEIR qrels TSV."),
    metrics: list[str] = typer.Option(DEFAULT_METRICS, *_METRICS_FLAGS, help=_METRICS_HELP),
    permutations: int = typer.Option(10_000, min=100, help="Permutations of the randomisation test."),
    seed: int = typer.Option(0, help="Seed of the randomisation test."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else."),
    run_queries_only: bool = typer.Option(False, "--run-queries-only",
                                          help="Only queries both runs hold (default: every qrels query)."),
) -> None:
    """Compare two runs per measure: means, delta (B - A), paired t-test and randomisation test p-values."""
    from rankwise.data import read_qrels, read_run
    from rankwise.eval import compare_runs, parse_measures, split_measures

    parse_measures(metrics)  # fail on a bad measure before reading any file
    names = split_measures(metrics)
    a, b, judged = read_run(run_a), read_run(run_b), read_qrels(qrels)
    results = compare_runs(a, b, judged, names, permutations=permutations, seed=seed,
                           run_queries_only=run_queries_only)
    if json_output:
        typer.echo(json.dumps({
            "run_a": str(run_a), "run_b": str(run_b), "queries": results[0].queries,
            "measures": {c.measure: {"mean_a": _round(c.mean_a), "mean_b": _round(c.mean_b),
                                     "delta": _round(c.delta), "t_test_p": _round(c.t_test_p),
                                     "randomisation_p": _round(c.randomisation_p)} for c in results}}))
        return
    out = Console()
    out.print(f"A = {run_a}, B = {run_b}, against {qrels}: {results[0].queries} queries")
    table = Table()
    for column in ("measure", "A", "B", "B - A", "t-test p", f"randomisation p ({permutations:,})"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for c in results:
        table.add_row(c.measure, f"{c.mean_a:.4f}", f"{c.mean_b:.4f}", f"{c.delta:+.4f}",
                      f"{c.t_test_p:.4f}", f"{c.randomisation_p:.4f}")
    out.print(table)


def _dataset_files(path_or_id: str) -> tuple[Path, ...]:
    """The files of a local dataset (outputs must never replace them)."""
    from rankwise.data import resolve_local

    local = resolve_local(path_or_id)
    if local is None:
        return ()
    return tuple(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else (local,)


def _retriever(kind: str, index: Optional[Path], model: Optional[str], batch_size: int, docs, overwrite: bool):
    """A ready retriever: loaded from ``index`` when it holds one, else built (and saved there)."""
    from rankwise.retrieve import BM25Retriever, DenseRetriever, read_index_meta
    from rankwise.retrieve.dense import DEFAULT_MODEL

    if index is not None and index.is_dir() and any(index.iterdir()) and not overwrite:
        meta = read_index_meta(index)
        if meta["retriever"] != kind:
            raise InputError(f"index was built by --retriever {meta['retriever']}, not {kind}", index)
        if kind == "dense" and model is not None and model != meta["model"]:
            raise InputError(f"index was built with model {meta['model']!r}, not {model!r}", index)
        started = time.perf_counter()
        retriever = BM25Retriever.load(index) if kind == "bm25" else DenseRetriever.load(index, batch_size)
        if set(retriever.docids) != set(docs):
            raise InputError(f"index covers {len(retriever.docids):,} documents, not the dataset's "
                             f"{len(docs):,}; rebuild it with --overwrite", index)
        err.print(f"loaded {kind} index of {len(retriever.docids):,} documents from {index} "
                  f"in {time.perf_counter() - started:.1f} s")
        return retriever
    if index is not None and index.exists() and not index.is_dir():
        raise InputError("is a file, expected an index directory", index)
    retriever = BM25Retriever() if kind == "bm25" else DenseRetriever(model or DEFAULT_MODEL, batch_size)
    started = time.perf_counter()
    retriever.index(docs)
    err.print(f"indexed {len(docs):,} documents ({kind}) in {time.perf_counter() - started:.1f} s")
    if index is not None:
        retriever.save(index)
        err.print(f"saved the index to {index}")
    return retriever


@app.command()
def retrieve(
    dataset: str = typer.Option(..., help="Dataset with a corpus: BEIR directory, alias (scifact) or id."),
    retriever: str = typer.Option("bm25", help="bm25 (bm25s, Lucene BM25) or dense (sentence-transformers)."),
    top_k: int = typer.Option(100, min=1, help="Documents per query."),
    output: Path = typer.Option(..., help="TREC run to write (.gz compresses)."),
    candidates: Optional[Path] = typer.Option(None, help="Also write candidates with text (rank_llm JSON; "
                                                         ".jsonl: one query per line; .gz compresses)."),
    index: Optional[Path] = typer.Option(None, help="Index directory: loaded if it holds one, else built "
                                                    "and saved there (--overwrite rebuilds it)."),
    model: Optional[str] = typer.Option(None, help="--retriever dense: model name, local dir/.zip or hub id "
                                                   "(default minilm-l6)."),
    batch_size: int = typer.Option(64, min=1, help="--retriever dense: texts per encoding batch."),
    judged_only: bool = typer.Option(False, "--judged-only", help="Only queries that have qrels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (and rebuild --index)."),
) -> None:
    """Retrieve the top-k documents of each query from a dataset's corpus; write a run (and candidates)."""
    from rankwise.data import LazyDocs, load_dataset, write_candidates, write_run
    from rankwise.retrieve import retrieve_candidates

    if retriever not in ("bm25", "dense"):
        raise InputError(f"unknown retriever {retriever!r} (choose bm25 or dense)")
    if model is not None and retriever != "dense":
        raise InputError("--model applies to --retriever dense only")
    inputs = _dataset_files(dataset) + ((index,) if index is not None else ())
    for path in (output, candidates):
        if path is not None and path.is_dir():
            raise InputError("is a directory, expected a file to write", path)
    guard_output(output, overwrite, inputs)
    if candidates is not None:
        guard_output(candidates, overwrite, inputs)
        if candidates.resolve() == output.resolve():
            raise InputError("--candidates and --output name the same file", output)
    ds = load_dataset(dataset)
    if ds.docs is None or isinstance(ds.docs, LazyDocs):
        raise InputError(f"dataset {ds.name} has no document corpus to retrieve from"
                         + (" (its texts come only from its candidate files)" if ds.docs is not None else ""))
    queries = ds.judged_queries() if judged_only else ds.queries
    if not queries:
        raise InputError(f"dataset {ds.name} has no queries")
    engine = _retriever(retriever, index, model, batch_size, ds.docs, overwrite)
    started = time.perf_counter()
    run, requests = retrieve_candidates(engine, queries, ds.docs, top_k)
    seconds = time.perf_counter() - started
    write_run(run, output, tag=f"rankwise-{retriever}")
    lines = sum(len(docs) for docs in run.values())
    err.print(f"retrieved {len(run):,} queries (top {top_k}) in {seconds:.1f} s -> {output} ({lines:,} lines)")
    if candidates is not None:
        write_candidates(requests, candidates)
        err.print(f"candidates with text -> {candidates}")
