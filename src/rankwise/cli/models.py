"""``rankwise models list``, ``rankwise models path NAME`` and ``rankwise env``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app, models_app
from rankwise.errors import ModelError
from rankwise.llm.models import (ModelSpec, ResolvedModel, hf_dir_for_gguf, hub_snapshot, is_installed,
                                 list_models, local_path, resolve_model)

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _notices_to_stderr() -> None:
    """Show rankwise's progress notices (assembling, converting) on stderr."""
    log = logging.getLogger("rankwise")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("rankwise: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _source(spec: ModelSpec) -> str:
    if spec.source == "hub":
        return f"hub {spec.hub_id}"
    return f"PyPI {spec.source} ({len(spec.packages)} package{'s' if len(spec.packages) > 1 else ''})"


@models_app.command("list")
def list_command() -> None:
    """Every model name: kind, where it comes from, whether it is installed, and its local path."""
    table = Table(show_edge=False)
    for column in ("name", "kind", "source", "installed", "path"):
        table.add_column(column, overflow="fold")
    for spec in list_models():
        installed = is_installed(spec)
        path = local_path(spec)
        shown = "yes" if installed else "no"
        if spec.source == "hub":
            shown = "cached" if installed else "download on use"
        elif installed and path is None:
            shown = "yes (assembled on first use)"
        table.add_row(spec.name, spec.kind, _source(spec), shown, str(path) if path else "-")
    out.print(table)
    out.print("Also accepted: a local .gguf file, a model directory, a .zip of one, or any hub id "
              "(owner/name).")


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
    _notices_to_stderr()
    resolved = resolve_model(name)
    if resolved.hub_id is not None:
        path = _hub_dir(resolved)
    elif hf and resolved.gguf_file is not None:
        path = hf_dir_for_gguf(resolved.gguf_file)
    else:
        path = resolved.gguf_file or resolved.hf_dir
    typer.echo(str(path))


def _yes_no(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[dim]no[/dim]"


@app.command("env")
def env_command(
    model: list[str] = typer.Option([], "--model", "-m", help="Measure each engine on this model "
                                    "(repeatable) and record the fastest for engine=auto."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, help="Seconds to measure each engine."),
    matmul_seconds: float = typer.Option(1.0, "--matmul-seconds", min=0.05,
                                         help="Seconds to measure matmul speed per dtype."),
) -> None:
    """Hardware, the dtype chosen per device, matmul peaks, and each engine's measured speed."""
    import torch

    from rankwise.llm import auto, hardware

    _notices_to_stderr()
    cpu = hardware.cpu_info()
    out.print(f"CPU: {cpu.model_name} ({cpu.vendor}), torch threads: {torch.get_num_threads()}")
    out.print("CPU features: " + ", ".join(f"{flag} {_yes_no(flag in cpu.flags)}"
                                           for flag in hardware.RELEVANT_FLAGS))
    out.print(f"torch {torch.__version__}, CPU capability {hardware.torch_cpu_capability()}")
    load, cores = auto.load_average(), os.cpu_count() or 1
    if load is not None and load > 0.5 * cores:
        out.print(f"[yellow]load average {load:.1f} on {cores} CPUs: other work is running, "
                  "so the speeds below are understated[/yellow]")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
        + (["mps"] if torch.backends.mps.is_available() else [])
    out.print("dtype=auto: " + ", ".join(
        f"{d} -> {hardware.dtype_name(hardware.choose_dtype('auto', d, cpu))}" for d in devices))
    device = hardware.choose_device()
    peaks = {name: hardware.measure_matmul_gflops(name, matmul_seconds, device=device)
             for name in ("float32", "bfloat16")}
    out.print(f"matmul on {device} (n=1024, measured): "
              + ", ".join(f"{k} {v:,.1f} GFLOP/s" for k, v in peaks.items()))
    for name in model:
        _env_model(name, seconds, peaks)


def _env_model(name: str, seconds: float, peaks: dict[str, float]) -> None:
    from rankwise.llm import auto

    resolved = resolve_model(name)
    out.print(f"\n[bold]{resolved.name}[/bold] ({resolved.kind}, {resolved.source})")
    engines = auto.available_engines(resolved)
    if resolved.kind == "embedding":
        out.print(f"  engine: {engines[0]} (embedding models are not measured)")
        return
    flops = auto.flops_per_token(resolved)
    choice = auto.engine_choice(name, measure_seconds=seconds, refresh=True)
    table = Table(show_edge=False)
    for column in ("engine", "dtype", "prompts", "tokens", "seconds", "tokens/s", "% of matmul peak"):
        table.add_column(column, justify="left" if column in ("engine", "dtype") else "right")
    for speed in choice.speeds:
        fraction = "-"
        if flops:
            peak_dtype = speed.dtype if speed.dtype in peaks else "float32"
            share = speed.tokens_per_s * flops / 1e9 / peaks[peak_dtype]
            fraction = f"{share:.0%}" + ("" if peak_dtype == speed.dtype else " of float32")
        table.add_row(speed.engine, speed.dtype, str(speed.prompts), f"{speed.tokens:,}",
                      f"{speed.seconds:.1f}", f"{speed.tokens_per_s:,.0f}", fraction)
    for engine, error in choice.errors.items():
        table.add_row(engine, "-", "-", "-", "-", "[red]failed[/red]", error[:80])
    out.print(table)
    if flops:
        out.print(f"  {flops / 1e9:.2f} GFLOP per token (2 x parameters, embeddings and head excluded)")
    out.print(f"  engine=auto -> {choice.engine} ({choice.dtype}); recorded in {auto.choice_file()}")
    if os.environ.get(auto.ENGINE_ENV):
        out.print(f"  (but {auto.ENGINE_ENV}={os.environ[auto.ENGINE_ENV]} overrides it)")
