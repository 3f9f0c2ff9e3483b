"""``rankwise env``: the hardware, the dtype chosen per device, matmul peaks, and each engine's measured speed."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app
from rankwise.cli.common import notices_to_stderr
from rankwise.llm.models import (
    resolve_model,
)

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


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

    notices_to_stderr()
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
