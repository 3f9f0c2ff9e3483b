"""``rankwise models cache``: what the model cache holds (sizes, last use), and ``--prune`` of what rebuilds."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import models_app

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 120)


@models_app.command("cache")
def cache_command(
    prune_: bool = typer.Option(False, "--prune", help="Remove the directories converted from GGUF files "
                                "(rebuilt on next use, 15-80 s each)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --prune: do not ask first."),
) -> None:
    """List the cache ($RANKWISE_CACHE, else ~/.cache/rankwise): each entry, its size and last use."""
    from rankwise.llm.models import cache_dir
    from rankwise.llm.models.inventory import ago, cache_entries, human_bytes, prune

    root = cache_dir()
    entries = cache_entries(root)
    table = Table(show_edge=False, title=f"{root} ($RANKWISE_CACHE)")
    for column in ("entry", "kind", "size", "last used", "prunable", "note"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(str(e.path.relative_to(root)), e.kind, human_bytes(e.bytes), ago(e.last_used),
                      "yes" if e.rebuildable else "no", e.note)
    out.print(table)
    total, reclaimable = sum(e.bytes for e in entries), sum(e.bytes for e in entries if e.rebuildable)
    out.print(f"{human_bytes(total)} in {len(entries)} entries; {human_bytes(reclaimable)} prunable "
              "(rankwise models cache --prune)")
    if not prune_ or not reclaimable:
        return
    if not yes and not typer.confirm(f"Remove {human_bytes(reclaimable)} of converted models?", default=False):
        raise typer.Exit(1)
    out.print(f"freed {human_bytes(prune(entries))}")
