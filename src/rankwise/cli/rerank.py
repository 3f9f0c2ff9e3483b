"""``rankwise rerank``: one method on one model over candidates, as a one-stage pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.cli.common import cpu_name, queries_line, write_json
from rankwise.cli.inputs import MAX_QUERIES_HELP, QIDS_HELP, QRELS_HELP, load_inputs, print_evaluation
from rankwise.cli.outputs import Outputs
from rankwise.errors import InputError

err = Console(stderr=True, soft_wrap=True)


@app.command()
def rerank(
    method: str = typer.Option(..., help="Method name (rankwise methods list)."),
    model: str = typer.Option(..., help="Model name, local GGUF/dir, or hub id (rankwise models list)."),
    output: Path = typer.Option(..., help="TREC run to write (every input candidate)."),
    candidates: Optional[Path] = typer.Option(None, help="Candidates file: rank_llm Request JSON[L] (current or "
                                                         "RankGPT shape), or rankwise JSONL."),
    dataset: Optional[str] = typer.Option(None, help="Dataset path, alias (dl19, dl20, scifact) or id."),
    run: Optional[str] = typer.Option(None, help="With --dataset: a TREC run file, or a first stage it ships."),
    engine: str = typer.Option("auto", help="auto|transformers|seq2seq|llamacpp|openai|vllm; rerank-api: "
                                            "--method crossencoder on a rerank server (--model its URL)."),
    dtype: str = typer.Option("auto", help="auto|float32|bfloat16|float16 (auto: bf16 only where native)."),
    top_k: int = typer.Option(100, help="Rerank the top k candidates; the rest follow in first-stage order."),
    batch_size: int = typer.Option(16, help="Prompts per forward pass."),
    prompt: Optional[str] = typer.Option(None, help="Prompt template name or YAML file."),
    max_passage_tokens: Optional[int] = typer.Option(None, help="Truncate each passage to this many tokens."),
    option: Optional[list[str]] = typer.Option(None, "--option", "-o",
                                               help="A method option KEY=VALUE (repeatable), e.g. -o rule=probability."),
    qrels: Optional[Path] = typer.Option(None, help=QRELS_HELP),
    qids: Optional[str] = typer.Option(None, help=QIDS_HELP),
    max_queries: Optional[int] = typer.Option(None, help=MAX_QUERIES_HELP),
    judged_only: bool = typer.Option(True, help="With qrels at hand: only queries that have judgments."),
    usage: Optional[Path] = typer.Option(None, help="Write cost (totals and per query) as JSON."),
    rank_llm: Optional[Path] = typer.Option(None, "--rank-llm", help="Also write the reranked candidates as "
                                            "rank_llm Result JSON (a list; JSON lines if it ends in .jsonl)."),
    cache: Optional[Path] = typer.Option(None, help="SQLite cache file (default: ~/.cache/rankwise)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Compute everything, store nothing."),
    base_url: Optional[str] = typer.Option(None, help="--engine openai: the server's /v1 URL."),
    backend_option: Optional[list[str]] = typer.Option(None, "--backend-option", "-b",
                                                       help="An engine option KEY=VALUE (repeatable), e.g. "
                                                            "-b shape=tei -b max_documents=16."),
    metrics: str = typer.Option("nDCG@10", help="Measures printed when qrels are at hand."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    executor: str = typer.Option("local", help="local (this process) or ray (a Ray cluster; rankwise\\[ray])."),
    address: Optional[str] = typer.Option(None, help="--executor ray: auto, ray://host:10001 or host:port "
                                                     "(default: start a local Ray)."),
    workers: Optional[int] = typer.Option(None, help="--executor ray: worker actors, each loading the model "
                                                     "once (default 2)."),
    threads_per_worker: Optional[int] = typer.Option(None, help="--executor ray: torch threads (and CPUs "
                                                                "reserved) per worker (default: CPUs / workers)."),
    gpus_per_worker: float = typer.Option(0.0, help="--executor ray: GPUs per worker (fractions share one)."),
    query_batch: int = typer.Option(1, help="Queries reranked at once: the same step of all of them in one "
                                            "backend call (worth it on a GPU; equal results)."),
    rank_scores: bool = typer.Option(False, help="Write n, n-1, ..., 1 as scores instead of the method's own."),
) -> None:
    """Rerank candidates with a method on a model; write a TREC run (and the cost)."""
    from rankwise.data import write_run
    from rankwise.pipeline import Rerank
    from rankwise.pipeline import run as run_stage

    _check_executor_options(executor, address, workers, threads_per_worker, gpus_per_worker)
    outputs = Outputs(overwrite, (candidates, run, qrels))
    for path in (output, usage, rank_llm):
        outputs.add(path)
    inputs = load_inputs(candidates, dataset, run, qrels, judged_only, qids, max_queries, err)
    requests = inputs.requests
    backend_options = {"engine": engine, "dtype": dtype, "batch_size": batch_size}
    if base_url:
        backend_options["base_url"] = base_url
    backend_options.update(parse_method_options(backend_option or [], "--backend-option"))
    method_opts = {}
    if prompt:
        method_opts["prompt"] = prompt
    if max_passage_tokens:
        method_opts["max_passage_tokens"] = max_passage_tokens
    method_opts.update(parse_method_options(option or []))
    backend_options.pop("engine"), backend_options.pop("dtype")
    stage = Rerank(method, model, top_k=top_k, engine=engine, dtype=dtype, backend_options=backend_options,
                   **method_opts)  # an unknown method or option fails here, before any model loads
    where = f"ray executor, {workers or 2} workers" if executor == "ray" else "this process"
    err.print(f"[bold]{stage}[/]: {len(requests)} queries, {where}")
    ray_options = dict(workers=workers or 2, address=address, threads_per_worker=threads_per_worker,
                       gpus_per_worker=gpus_per_worker) if executor == "ray" else {}
    result = run_stage(stage, requests, executor=executor, cache=False if no_cache else (cache or True),
                       query_batch=query_batch, progress=True, **ray_options)
    written = outputs.write(output, lambda tmp: write_run(result.run(rank_scores=rank_scores), tmp, tag=method))
    if rank_llm is not None:
        from rankwise.data import write_rank_llm

        outputs.write(rank_llm, lambda tmp: write_rank_llm(list(result.rankings.values()), tmp))
    loaded = {"engine": result.usage.engine, "dtype": result.usage.dtype, "model": result.usage.model}
    report = result.usage_report(**loaded, method=method, top_k=top_k, cpu=cpu_name())
    err.print(f"wrote {written}: {queries_line(report)}, {report['calls']} prompts "
              f"({report['cache_hits']} from cache), {report['computed_tokens']} computed tokens, "
              f"{report['wall_seconds']:.1f} s")
    if report["comparisons"]:
        agreed = 1 - report["inconsistent"] / report["comparisons"]
        err.print(f"both orders picked the same passage in {agreed:.0%} of {report['comparisons']} comparisons "
                  "(the others are draws: position bias or no preference)")
    if report["windows"]:
        err.print(f"{report['unchanged_windows']} of {report['windows']} windows kept the order they were shown "
                  f"in; {report['parse_failures']} answers needed repair")
    effectiveness = print_evaluation(result.run(), inputs.qrels, metrics, err)
    if usage is not None:
        payload = {**report, "effectiveness": effectiveness} if effectiveness else report
        outputs.write(usage, lambda tmp: write_json(payload, tmp))
    outputs.finish()


def parse_method_options(pairs: list[str], flag: str = "--option") -> dict:
    """``["k=10", "rule=probability"]`` -> ``{"k": 10, "rule": "probability"}`` (values read as YAML scalars)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"{flag} takes KEY=VALUE (e.g. rule=probability), got {pair!r}")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def _check_executor_options(executor: str, address: Optional[str], workers: Optional[int],
                            threads_per_worker: Optional[int], gpus_per_worker: float) -> None:
    """The executor exists, and options of the Ray executor are not given to another one."""
    from rankwise.pipeline import EXECUTORS

    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        for name, value in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")
        if gpus_per_worker < 0:
            raise InputError(f"--gpus-per-worker must not be negative, got {gpus_per_worker}")
        return
    given = [name for name, value in (("--address", address), ("--workers", workers),
                                      ("--threads-per-worker", threads_per_worker),
                                      ("--gpus-per-worker", gpus_per_worker or None)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)} only apply to --executor ray")
