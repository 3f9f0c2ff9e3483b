"""``rankwise models list`` and ``rankwise models path``: model names resolved to local files."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import models_app
from rankwise.cli.common import notices_to_stderr
from rankwise.errors import ModelError
from rankwise.llm.models import (
    ModelSpec,
    ResolvedModel,
    hf_dir_for_gguf,
    hub_snapshot,
    is_installed,
    list_models,
    local_path,
    resolve_model,
)

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 100)


def _source(spec: ModelSpec) -> str:
    if spec.source == "hub":
        return f"hub {spec.hub_id}"
    return f"PyPI {spec.source} ({len(spec.packages)} package{'s' if len(spec.packages) > 1 else ''})"


@models_app.command("list")
def list_command(paths: bool = typer.Option(False, "--paths", help="Add each model's local path (wide).")) -> None:
    """Every model name: kind, where it comes from, whether it is installed, the memory it needs here (and
    with --paths its local path)."""
    from rankwise.llm.hardware import choose_dtype, dtype_name

    dtype = dtype_name(choose_dtype("auto"))
    table = Table(show_edge=False)
    for column in ("name", "kind", "source", "installed", "memory", *(("path",) if paths else ())):
        table.add_column(column, overflow="fold")
    for spec in list_models():
        installed = is_installed(spec)
        path = local_path(spec)
        shown = "yes" if installed else "no"
        if spec.source == "hub":
            shown = "cached" if installed else "download on use"
        elif installed and path is None:
            shown = "yes (assembled on first use)"
        table.add_row(spec.name, spec.kind, _source(spec), shown, _memory(spec, path, dtype),
                      *((str(path) if path else "-",) if paths else ()))
    out.print(table)
    out.print(f"memory: estimated GB resident / peak while loading (transformers, {dtype}: this machine's dtype);")
    out.print("a run warns before loading when less is free.")
    out.print("Also accepted: a local .gguf file, a model directory, a .zip of one, or any hub id (owner/name).")
    out.print("`rankwise models path NAME` prints where a model is; `rankwise models cache` what the cache holds.")


def _memory(spec: ModelSpec, path: Path | None, dtype: str) -> str:
    """'3.5 / 5.2 GB' for a causal LM whose GGUF file is on disk, else '-'."""
    from rankwise.llm.memory import GB, memory_need, parameter_count

    if spec.kind != "causal-lm" or path is None or path.suffix != ".gguf":
        return "-"
    need = memory_need(parameter_count(gguf_file=path), dtype)
    return f"{need.resident / GB:.1f}/{need.peak / GB:.1f}"


def _hub_dir(resolved: ResolvedModel) -> Path:
    snapshot = hub_snapshot(resolved.hub_id or "")
    if snapshot is None:
        raise ModelError(f"{resolved.name} is the hub model {resolved.hub_id}, not downloaded on this "
                         "machine; engines download it on first use")
    return snapshot


@models_app.command("path")
def path_command(
    name: str = typer.Argument(..., help="A model name (see `rankwise models list`), file or hub id."),
    hf: bool = typer.Option(False, "--hf", help="The transformers directory (a GGUF model is "
                            "converted once, 15-80 s)."),
) -> None:
    """Print the model's local path: the (assembled) GGUF file, or with --hf a transformers directory."""
    notices_to_stderr()
    resolved = resolve_model(name)
    if resolved.hub_id is not None:
        path = _hub_dir(resolved)
    elif hf and resolved.gguf_file is not None:
        path = hf_dir_for_gguf(resolved.gguf_file)
    else:
        path = resolved.gguf_file or resolved.hf_dir
    typer.echo(str(path))
