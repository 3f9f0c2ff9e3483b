"""``rankwise bench CONFIG.yaml --output DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app

err = Console(stderr=True)


@app.command()
def bench(
    config: Path = typer.Argument(..., help="Benchmark matrix (YAML): datasets, first stages, methods, models."),
    output: Path = typer.Option(..., help="Directory for the cells (JSON), results.md and plot.png; an "
                                          "existing one is resumed (finished cells are not run again)."),
    executor: str = typer.Option("local", help="local (this process) or ray (a Ray cluster; rankwise\\[ray])."),
    address: Optional[str] = typer.Option(None, help="--executor ray: auto, ray://host:10001 or host:port "
                                                     "(default: a local Ray)."),
    workers: int = typer.Option(2, help="--executor ray: worker actors, each loading the model once."),
    threads_per_worker: Optional[int] = typer.Option(None, help="--executor ray: torch threads per worker."),
    datasets: Optional[str] = typer.Option(None, help="Replace the config's datasets (comma-separated)."),
    models: Optional[str] = typer.Option(None, help="Replace the config's top-level models (comma-separated); "
                                                    "methods that name their own model keep it."),
    max_queries: Optional[int] = typer.Option(None, help="Replace the config's max_queries."),
    top_k: Optional[int] = typer.Option(None, help="Replace the config's top_k."),
    only: Optional[str] = typer.Option(None, help="Run only the methods of these labels (comma-separated; "
                                                  "'none': only the first stages)."),
    retime: bool = typer.Option(False, help="Re-run finished cells that no CPU of this machine's class has timed: "
                                            "nDCG@10 must agree within 0.002 (else an error), both timings kept."),
) -> None:
    """Run a benchmark matrix; write one JSON per cell, a Markdown table and a plot of nDCG@10 against cost."""
    from rankwise.bench import (
        BenchConfig,
        cpus_that_timed,
        markdown_table,
        on_ray,
        peer_table,
        plot,
        robustness_table,
        run_bench,
        summary_table,
    )
    from rankwise.cli.outputs import check_writable
    from rankwise.data._io import write_atomically
    from rankwise.errors import InputError

    overrides = {"datasets": _split(datasets), "models": _split(models), "max_queries": max_queries, "top_k": top_k}
    matrix = BenchConfig.from_file(config, overrides)
    command = " ".join([f"rankwise bench {config}"]
                       + [f"--{key.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}"
                          for key, v in overrides.items() if v is not None] + [f"--output {output}"]
                       + ([f"--only {only}"] if only else []) + (["--retime"] if retime else []))
    _check_models_used(matrix, _split(models), _split(only))
    if output.exists() and not output.is_dir():
        raise InputError("--output must be a directory", output)
    check_writable(output / "results.md")  # before any model loads
    if executor not in ("local", "ray"):
        raise InputError(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray":
        import ray

        started = not ray.is_initialized()
        if started:  # one cluster for every cell; each cell's workers load their model
            ray.init(address=address)
        try:
            cells = run_bench(matrix, output, log=err.print, retime=retime, only=_split(only) or (),
                              rerank=on_ray(matrix, workers=workers, threads_per_worker=threads_per_worker))
        finally:
            if started:
                ray.shutdown()
    else:
        cells = run_bench(matrix, output, log=err.print, retime=retime, only=_split(only) or ())
    table = markdown_table(cells)
    summary = summary_table(cells)
    if summary:
        table += "\n## Across datasets, best mean change first\n\n" + summary
        if "†" in summary:
            table += "\n† p < 0.05 against the first stage (paired randomisation test over the same queries).\n"
    robustness = robustness_table(cells)
    if robustness:
        table += "\n## Robustness across datasets\n\n" + robustness
    peers = peer_table(cells)
    if peers:
        table += "\n## Side by side with peer toolkits\n\n" + peers
    write_atomically(output / "results.md", lambda tmp: tmp.write_text(
        f"CPU: {cpus_that_timed(cells)}. Command: `{command}`\n\n" + table, encoding="utf-8"))
    write_atomically(output / "plot.png", lambda tmp: plot(cells, tmp))
    typer.echo(table)
    err.print(f"wrote {output / 'results.md'} and {output / 'plot.png'}")
    failed = [c for c in cells if "error" in c]
    if failed:
        err.print(f"[yellow]{len(failed)} cell(s) failed (a re-run retries them): "
                  + "; ".join(f"{c['dataset']}/{c['method']} on {c.get('model', '')}: {c['error']}" for c in failed)
                  + "[/yellow]")
        raise typer.Exit(1)


def _split(names: Optional[str]) -> Optional[list[str]]:
    return [n.strip() for n in names.split(",") if n.strip()] if names is not None else None


def _check_models_used(matrix, models: list[str] | None, only: list[str] | None) -> None:
    """--models that no selected method runs on is an error (entries that name their own model keep it),
    not a run that silently does nothing new."""
    from rankwise.errors import InputError

    selected = [s for s in matrix.methods if not only or s.name in only]
    unused = [m for m in models or () if not any(s.model == m and any(matrix.runs_on(s, d) for d in matrix.datasets)
                                                 for s in selected)]
    if unused:
        fixed = sorted({f"{s.name} ({s.model})" for s in selected if s.model not in (models or ())})
        raise InputError(f"--models {', '.join(unused)}: no selected method runs on it for the selected datasets"
                         + (f"; these entries name their own model: {', '.join(fixed)} (give the model in a "
                            "config entry instead, e.g. examples/bench-headline-trained.yaml)" if fixed else ""))
