"""The typer application; command modules register themselves on it."""

from __future__ import annotations

import typer

app = typer.Typer(help="rankwise: rerank, evaluate and train rerankers.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
models_app = typer.Typer(help="Resolve model names to local files.", no_args_is_help=True)
methods_app = typer.Typer(help="Reranking methods.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _print_version(value: bool) -> None:
    if value:
        from rankwise import __version__

        typer.echo(f"rankwise {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")) -> None:
    """rankwise: rerank, evaluate and train rerankers."""
app.add_typer(methods_app, name="methods")
