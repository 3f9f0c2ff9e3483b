"""``rankwise run PIPELINE.yaml``: a pipeline file over a dataset; a TREC run, the cost of every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.cli.common import cpu_name, guard_output, print_evaluation, write_json
from rankwise.errors import InputError

err = Console(stderr=True)


@app.command("run")
def run_command(
    pipeline: Path = typer.Argument(..., help="Pipeline file, YAML or JSON (see examples/pipeline-*.yaml)."),
    output: Path = typer.Option(..., help="TREC run to write."),
    dataset: Optional[str] = typer.Option(None, help="Dataset path, alias (dl19, dl20, scifact) or id."),
    run: Optional[str] = typer.Option(None, help="First stage for a pipeline without one: a TREC run file, or a "
                                                 "run the dataset ships (bm25)."),
    candidates: Optional[Path] = typer.Option(None, help="Or: a candidates file (rank_llm JSON[.gz] or JSONL)."),
    max_queries: Optional[int] = typer.Option(None, help="Only the first N queries."),
    judged_only: bool = typer.Option(True, help="With --dataset: only queries that have qrels."),
    usage: Optional[Path] = typer.Option(None, help="Write the cost (total, per stage, per query) as JSON."),
    cache: Optional[Path] = typer.Option(None, help="SQLite cache file (default: ~/.cache/rankwise)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Compute everything, store nothing."),
    metrics: str = typer.Option("nDCG@10", help="Measures printed when the dataset has qrels."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    query_batch: int = typer.Option(1, help="Queries reranked at once (the same step in one backend call)."),
    rank_scores: bool = typer.Option(False, help="Write n, n-1, ..., 1 as scores instead of the pipeline's own."),
) -> None:
    """Run a pipeline file (first stage, rerankers, fusion) over a dataset; write a TREC run and its cost."""
    from rankwise.cli.rerank import load_requests
    from rankwise.data import load_dataset, write_run
    from rankwise.pipeline import Backends, load_pipeline
    from rankwise.types import Query

    stage = load_pipeline(pipeline)  # a bad file fails before any data or model loads
    inputs = (candidates, run, pipeline)
    guard_output(output, overwrite, inputs)
    if usage is not None:
        guard_output(usage, overwrite, inputs)
    backends = Backends(cache=False if no_cache else (cache or True))
    if stage.is_source:
        first = next(stage.leaves())[1]
        if run is not None or candidates is not None:
            raise InputError(f"the pipeline starts with its own first stage ({first}); drop --run/--candidates",
                             pipeline)
        if dataset is None:
            raise InputError(f"the pipeline retrieves ({first}): give --dataset", pipeline)
        ds = load_dataset(dataset)
        queries = ds.judged_queries() if judged_only else ds.queries
        selected = [Query(qid, text) for qid, text in queries.items()][:max_queries]
        if not selected:
            raise InputError("no queries to run")
        err.print(f"[bold]{stage}[/]: {len(selected)} queries")
        result = stage.run(dataset=ds, queries=selected, backends=backends, progress=True, query_batch=query_batch)
    else:
        requests, ds = load_requests(candidates, dataset, run, max_queries, judged_only)
        err.print(f"[bold]{stage}[/]: {len(requests)} queries")
        result = stage.run(requests, dataset=ds, backends=backends, progress=True, query_batch=query_batch)
    write_run(result.run(rank_scores=rank_scores), output, tag="".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in pipeline.stem))
    report = result.usage_report(file=str(pipeline), cpu=cpu_name())
    if usage is not None:
        write_json(report, usage)
    for s in result.stages:
        err.print(f"  stage {s.path}: {s.stage}: {s.usage.calls} prompts, {s.usage.computed_tokens} computed tokens, "
                  f"{s.wall_seconds:.2f} s (+{s.load_seconds:.1f} s loading)")
    err.print(f"wrote {output}: {report['queries']} queries, {report['wall_seconds']:.1f} s")
    print_evaluation(result.run(), ds, metrics, err)
