"""``rankwise bench CONFIG.yaml --output DIR``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rankwise.cli.app import app

err = Console(stderr=True)


@app.command()
def bench(
    config: Path = typer.Argument(..., help="Benchmark matrix (YAML): datasets, first stages, methods, models."),
    output: Path = typer.Option(..., help="Directory for the cells (JSON), results.md and plot.png; an "
                                          "existing one is resumed (finished cells are not run again)."),
) -> None:
    """Run a benchmark matrix; write one JSON per cell, a Markdown table and a plot of nDCG@10 against cost."""
    from rankwise.bench import BenchConfig, markdown_table, plot, run_bench

    matrix = BenchConfig.from_file(config)
    if output.exists() and not output.is_dir():
        from rankwise.errors import InputError

        raise InputError("--output must be a directory", output)
    cells = run_bench(matrix, output, log=err.print)
    table = markdown_table(cells)
    (output / "results.md").write_text(f"CPU: {cells[0]['cpu']}. Command: `rankwise bench {config} "
                                       f"--output {output}`\n\n" + table, encoding="utf-8")
    plot(cells, output / "plot.png")
    typer.echo(table)
    err.print(f"wrote {output / 'results.md'} and {output / 'plot.png'}")
