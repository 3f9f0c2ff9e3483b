"""``rankwise methods list`` and ``rankwise methods show NAME``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import methods_app


@methods_app.command("list")
def methods_list() -> None:
    """Every reranking method, with what it needs."""
    from rankwise.methods.registry import method_infos

    table = Table("method", "needs", "description")
    for info in method_infos():
        table.add_row(info.name, info.needs, info.description)
    Console().print(table)


@methods_app.command("show")
def methods_show(name: str = typer.Argument(..., help="A method name (rankwise methods list).")) -> None:
    """A method's description, the backend it needs, and its options (name, type, default, help)."""
    from rankwise.methods.registry import GUARD, method_info

    info = method_info(name)
    console = Console()
    console.print(f"[bold]{info.name}[/]: {info.description} (needs: {info.needs})")
    table = Table("option", "type", "default", "help")
    for option in info.options + (GUARD,):
        types = option.type if isinstance(option.type, tuple) else (option.type,)
        kind = "/".join(t.__name__ for t in types)
        help_text = option.help + (f" ({' | '.join(map(str, option.choices))})" if option.choices else "")
        table.add_row(option.name, kind, repr(option.default), help_text)
    console.print(table)
    console.print(f"Pass them as -o KEY=VALUE (rankwise rerank), options: in a pipeline file, or keywords "
                  f"of load_reranker(\"{info.name}\", model, ...).")
