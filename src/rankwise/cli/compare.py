"""``rankwise compare``: two runs per measure, with paired significance tests."""

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
    round4,
)


@app.command(cls=MetricsCommand)
def compare(
    run_a: Path = typer.Argument(..., help="Baseline TREC run (A)."),
    run_b: Path = typer.Argument(..., help="TREC run compared with it (B)."),
    qrels: Path = typer.Option(..., help="TREC qrels or BEIR qrels TSV."),
    metrics: list[str] = typer.Option(DEFAULT_METRICS, *METRICS_FLAGS, help=METRICS_HELP),
    permutations: int = typer.Option(10_000, min=100, help="Permutations of the randomisation test."),
    seed: int = typer.Option(0, help="Seed of the randomisation test."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else."),
    all_qrels_queries: bool = typer.Option(False, "--all-qrels-queries", "-c",
                                           help="Score every qrels query, one missing from a run as 0 (trec_eval "
                                                "-c). Default: only the judged queries both runs hold."),
    run_queries_only: bool = typer.Option(True, "--run-queries-only", hidden=True,
                                          help="The default (kept for scripts that pass it)."),
) -> None:
    """Compare two runs per measure: means, delta (B - A), paired t-test and randomisation test p-values."""
    from rankwise.data import read_qrels, read_run
    from rankwise.eval import Coverage, compare_runs, parse_measures, split_measures

    parse_measures(metrics)  # fail on a bad measure before reading any file
    names = split_measures(metrics)
    a, b, judged = read_run(run_a), read_run(run_b), read_qrels(qrels)
    shared_only = not all_qrels_queries
    results = compare_runs(a, b, judged, names, permutations=permutations, seed=seed,
                           run_queries_only=shared_only)
    coverage = {"a": Coverage.of(a, judged, shared_only), "b": Coverage.of(b, judged, shared_only)}
    convention = coverage["a"].convention
    missing_a, missing_b = coverage["a"].missing_from_run, coverage["b"].missing_from_run
    n = results[0].queries
    scope = (f"{n} queries: every qrels query, {missing_a} missing from A and {missing_b} from B scored 0 "
             "(trec_eval -c)" if all_qrels_queries else
             f"{n} judged queries both runs hold, of {len(judged)} qrels queries ({missing_a} not in A, "
             f"{missing_b} not in B; --all-qrels-queries scores them as 0)")
    if json_output:
        typer.echo(json.dumps({
            "run_a": str(run_a), "run_b": str(run_b), "queries": n, "convention": convention,
            "qrels_queries": len(judged), "missing_from_a": missing_a, "missing_from_b": missing_b,
            "coverage": {k: c.to_dict() for k, c in coverage.items()},
            "measures": {c.measure: {"mean_a": round4(c.mean_a), "mean_b": round4(c.mean_b),
                                     "delta": round4(c.delta), "t_test_p": round4(c.t_test_p),
                                     "randomisation_p": round4(c.randomisation_p)} for c in results}}))
        return
    out = Console(soft_wrap=True)
    out.print(f"A = {run_a}, B = {run_b}, against {qrels}: {scope}")
    table = Table()
    for column in ("measure", "A", "B", "B - A", "t-test p", f"randomisation p ({permutations:,})"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for c in results:
        table.add_row(c.measure, f"{c.mean_a:.4f}", f"{c.mean_b:.4f}", f"{c.delta:+.4f}",
                      f"{c.t_test_p:.4f}", f"{c.randomisation_p:.4f}")
    out.print(table)
