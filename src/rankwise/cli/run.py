"""``rankwise run PIPELINE.yaml``: a pipeline file over a dataset; a TREC run, the cost of every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.cli.common import cpu_name, queries_line, write_json
from rankwise.cli.inputs import (MAX_QUERIES_HELP, QIDS_HELP, QRELS_HELP, load_inputs, print_evaluation,
                                read_qrels_option, select)
from rankwise.cli.outputs import Outputs
from rankwise.errors import InputError

err = Console(stderr=True, soft_wrap=True)


@app.command("run")
def run_command(
    pipeline: Path = typer.Argument(..., help="Pipeline file, YAML or JSON (see examples/pipeline-*.yaml)."),
    output: Path = typer.Option(..., help="TREC run to write."),
    dataset: Optional[str] = typer.Option(None, help="Dataset path, alias (dl19, dl20, scifact) or id."),
    run: Optional[str] = typer.Option(None, help="The first stage: a TREC run file, or a run the dataset ships "
                                                 "(bm25); replaces the pipeline's own first stage, if any."),
    candidates: Optional[Path] = typer.Option(None, help="Or: a candidates file (rank_llm JSON[.gz] or JSONL) "
                                                         "as the first stage, replacing the pipeline's own."),
    qrels: Optional[Path] = typer.Option(None, help=QRELS_HELP),
    qids: Optional[str] = typer.Option(None, help=QIDS_HELP),
    max_queries: Optional[int] = typer.Option(None, help=MAX_QUERIES_HELP),
    judged_only: bool = typer.Option(True, help="With qrels at hand: only queries that have judgments."),
    usage: Optional[Path] = typer.Option(None, help="Write the cost (total, per stage, per query) as JSON."),
    cache: Optional[Path] = typer.Option(None, help="SQLite cache file (default: ~/.cache/rankwise)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Compute everything, store nothing."),
    metrics: str = typer.Option("nDCG@10", help="Measures printed when qrels are at hand."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    query_batch: int = typer.Option(1, help="Queries reranked at once (the same step in one backend call)."),
    rank_scores: bool = typer.Option(False, help="Write n, n-1, ..., 1 as scores instead of the pipeline's own."),
) -> None:
    """Run a pipeline file (first stage, rerankers, fusion) over a dataset or a candidates file; write a TREC
    run and its cost. Given --candidates or --run, these replace the pipeline's own first stage."""
    from rankwise.data import load_dataset, write_run
    from rankwise.pipeline import Backends, load_pipeline
    from rankwise.pipeline.stages import split_first_stage
    from rankwise.types import Query

    stage = load_pipeline(pipeline)  # a bad file fails before any data or model loads
    outputs = Outputs(overwrite, (candidates, run, pipeline, qrels))
    outputs.add(output)
    outputs.add(usage)
    backends = Backends(cache=False if no_cache else (cache or True))
    given = run is not None or candidates is not None
    first_top_k = None
    if stage.is_source and given:
        first, stage = split_first_stage(stage)
        first_top_k = first.top_k
        kept = f", its top {first_top_k} kept" if first_top_k is not None else ""
        err.print(f"note: {candidates or run} replaces the pipeline's first stage {first}{kept}")
    if stage.is_source:
        first = next(stage.leaves())[1]
        if dataset is None:
            raise InputError(f"the pipeline retrieves ({first}): give --dataset, or --candidates FILE to "
                             "replace its first stage", pipeline)
        ds = load_dataset(dataset)
        judgments = read_qrels_option(qrels, ds)
        chosen = select(list(ds.queries), judgments, judged_only, qids, max_queries, ds.name, err)
        selected = [Query(qid, ds.queries[qid]) for qid in chosen]
        err.print(f"[bold]{stage}[/]: {len(selected)} queries")
        result = stage.run(dataset=ds, queries=selected, backends=backends, progress=True, query_batch=query_batch)
    else:
        loaded = load_inputs(candidates, dataset, run, qrels, judged_only, qids, max_queries, err, first_top_k)
        ds, judgments = loaded.dataset, loaded.qrels
        err.print(f"[bold]{stage}[/]: {len(loaded.requests)} queries")
        result = stage.run(loaded.requests, dataset=ds, backends=backends, progress=True, query_batch=query_batch)
    tag = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in pipeline.stem)
    written = outputs.write(output, lambda tmp: write_run(result.run(rank_scores=rank_scores), tmp, tag=tag))
    report = result.usage_report(file=str(pipeline), cpu=cpu_name())
    for s in result.stages:
        err.print(f"  stage {s.path}: {s.stage}: {s.usage.calls} prompts, {s.usage.computed_tokens} computed tokens, "
                  f"{s.wall_seconds:.2f} s (+{s.load_seconds:.1f} s loading)")
    err.print(f"wrote {written}: {queries_line(report)}, {report['wall_seconds']:.1f} s")
    effectiveness = print_evaluation(result.run(), judgments, metrics, err)
    if usage is not None:
        payload = {**report, "effectiveness": effectiveness} if effectiveness else report
        outputs.write(usage, lambda tmp: write_json(payload, tmp))
    outputs.finish()
