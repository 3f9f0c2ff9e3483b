"""``rankwise models list``, ``rankwise models path`` (model names resolved to local files) and ``rankwise models
show`` (the profile of a model family: its own prompt, read-out and options)."""

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


@models_app.command("show")
def show_command(name: str = typer.Argument(..., help="A profile name (e.g. rankt5) or a model: registry name, "
                                                      "hub id or directory.")) -> None:
    """The profile a model family runs with: where its prompt comes from, the prompt, methods, options,
    read-out, engine, chat frame, and where rankwise differs from the reference."""
    from rich.markup import escape

    from rankwise.llm.profiles import profile_for, profiles

    known = {p.name: p for p in profiles()}
    profile = known.get(name) or profile_for(name)
    if profile is None:
        raise ModelError(f"no profile matches {name!r}: it runs with the methods' own prompts "
                         f"(profiles: {', '.join(known)})")
    template = profile.template()
    match = {"names": profile.names, "architectures": profile.architectures, "model types": profile.model_types}
    table = Table(show_header=False, show_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [("profile", profile.name), ("family", profile.family), ("source", profile.source),
            ("matches", "; ".join(f"{k} {', '.join(v)}" for k, v in match.items() if v)),
            ("prompt", profile.prompt + (f" (answer tokens {', '.join(template.choices)})" if template.choices
                                         else "")),
            ("methods", ", ".join(profile.methods) + " (the first is the default)"),
            ("options", ", ".join(f"{k}={v!r}" for k, v in profile.options.items()) or "-"),
            ("read-out", profile.readout), ("engine", profile.engine or "auto"),
            ("chat frame", repr(profile.chat) if profile.chat else "none: the engine's own (chat template or text)"),
            ("caveat", profile.caveat or "-")]
    for field, value in rows:
        table.add_row(field, escape(value))
    out.print(table)
