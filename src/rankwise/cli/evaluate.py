"""``rankwise evaluate``: score a run against qrels."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app
from rankwise.cli.measures import (
    DEFAULT_METRICS,
    METRICS_FLAGS,
    METRICS_HELP,
    MetricsCommand,
    coverage_note,
    round4,
)


@app.command(cls=MetricsCommand)
def evaluate(
    run: Path = typer.Option(..., help="TREC run file (plain or .gz)."),
    qrels: Path = typer.Option(..., help="TREC qrels (qid iter docid grade) or BEIR qrels TSV."),
    metrics: list[str] = typer.Option(DEFAULT_METRICS, *METRICS_FLAGS, help=METRICS_HELP),
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
    coverage_note(run_d, qrels_d, run_queries_only)
    if json_output:
        result: dict = {k: round4(v) for k, v in scores.items()}
        if per_query:
            result = {"aggregate": result,
                      "per_query": {q: {k: round4(v) for k, v in row.items()} for q, row in rows.items()}}
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
