"""``rankwise evaluate``: score a run against qrels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app
from rankwise.cli.measures import (
    DEFAULT_METRICS,
    METRICS_FLAGS,
    METRICS_HELP,
    MetricsCommand,
    convention_header,
    coverage_note,
    round4,
)
from rankwise.errors import InputError


@app.command(cls=MetricsCommand)
def evaluate(
    run: Optional[Path] = typer.Option(None, help="TREC run file (plain or .gz)."),
    candidates: Optional[Path] = typer.Option(None, help="Or: a candidates file (rank_llm JSON[.gz] or JSONL), "
                                                         "scored in its own order (the first stage)."),
    qrels: Path = typer.Option(..., help="TREC qrels (qid iter docid grade) or BEIR qrels TSV."),
    metrics: list[str] = typer.Option(DEFAULT_METRICS, *METRICS_FLAGS, help=METRICS_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else."),
    per_query: bool = typer.Option(False, "--per-query", help="Also give each query's values."),
    qids: Optional[str] = typer.Option(None, help="Only these queries (of the run and the qrels): a "
                                                  "comma-separated list, or a file whose lines start with a qid."),
    all_qrels_queries: bool = typer.Option(False, "--all-qrels-queries", "-c",
                                           help="Average over every qrels query, one missing from the run as 0 "
                                                "(trec_eval -c). Default: the judged queries of the run "
                                                "(trec_eval without -c). Both figures are shown when they differ."),
    run_queries_only: bool = typer.Option(True, "--run-queries-only", hidden=True,
                                          help="The default (kept for scripts that pass it)."),
) -> None:
    """Score a run (or a candidates file's own order) against qrels. The averages say which queries they
    cover (by default the judged queries of the run); when the run lacks qrels queries, the trec_eval -c
    figure is shown beside them."""
    from rankwise.data import read_qrels, read_run
    from rankwise.eval import evaluate_per_query, evaluate_with_coverage, parse_measures, split_measures

    parse_measures(metrics)  # fail on a bad measure before reading any file
    names = split_measures(metrics)
    if (run is None) == (candidates is None):
        raise InputError("give --run FILE or --candidates FILE (one of them)")
    run_d = read_run(run) if run is not None else candidates_run(candidates)
    qrels_d = read_qrels(qrels)
    if qids is not None:
        run_d, qrels_d = only_qids(run_d, qrels_d, qids)
    run_only = not all_qrels_queries
    result = evaluate_with_coverage(run_d, qrels_d, names, run_queries_only=run_only)
    rows = evaluate_per_query(run_d, qrels_d, names, run_queries_only=run_only) if per_query else {}
    if json_output:
        coverage_note(result.coverage)
        out: dict = result.to_dict(round4)
        if per_query:
            out = {"aggregate": {n: out.pop(n) for n in names}, **out,
                   "per_query": {q: {k: round4(v) for k, v in row.items()} for q, row in rows.items()}}
        typer.echo(json.dumps(out))
        return
    console = Console(soft_wrap=True)
    console.print(f"{run or candidates} against {qrels}: {result.coverage.averaged_over} queries")
    console.print(result.coverage.describe())
    console.print(_table(names, result, rows))


def _table(names: list[str], result, rows: dict) -> Table:
    """Measures down, or queries down with --per-query; the other convention's figures as one more column
    (or row) where they differ."""
    table = Table()
    if rows:
        table.add_column("query")
        for name in names:
            table.add_column(name, justify="right")
        for qid, row in rows.items():
            table.add_row(qid, *(f"{row[n]:.4f}" for n in names))
        table.add_row(f"mean: {convention_header(result.coverage)}", *(f"{result.scores[n]:.4f}" for n in names),
                      style="bold")
        if result.other is not None:
            table.add_row(f"mean: {convention_header(result.coverage, other=True)}",
                          *(f"{result.other[n]:.4f}" for n in names))
        return table
    table.add_column("measure")
    table.add_column(convention_header(result.coverage), justify="right")
    if result.other is not None:
        table.add_column(convention_header(result.coverage, other=True), justify="right")
    for name in names:
        other = [f"{result.other[name]:.4f}"] if result.other is not None else []
        table.add_row(name, f"{result.scores[name]:.4f}", *other)
    return table


def candidates_run(path: Path) -> dict:
    """The run behind a candidates file: its candidates in file order, scored as given (or n..1)."""
    from rankwise.data import read_candidates, run_from_requests

    return run_from_requests(read_candidates(path))


def only_qids(run: dict, qrels: dict, qids: str) -> tuple[dict, dict]:
    """Run and qrels cut to the queries ``--qids`` names (each must be in one of them)."""
    from rankwise.data.selection import parse_qids, select_qids

    chosen = set(select_qids(list(qrels) + list(run), qids=parse_qids(qids), source="the run or the qrels"))
    return ({q: d for q, d in run.items() if q in chosen}, {q: j for q, j in qrels.items() if q in chosen})
