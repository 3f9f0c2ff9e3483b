"""``rankwise train CONFIG.yaml``: train a reranker (a cross-encoder; an embedding model for E2Rank; an LLM
by SFT, contrastive training or GRPO)."""

from __future__ import annotations

import fcntl
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.errors import InputError

err = Console(stderr=True)


LOCK_FILE = ".rankwise-train.lock"


def check_output(output: Path, overwrite: bool, resume: bool) -> bool:
    """Whether the training directory must be emptied first; raises where it may not be used. Changes nothing:
    never overwrite without --overwrite, and only ever empty a directory that an earlier ``rankwise train``
    wrote."""
    from rankwise.train.crossencoder_trainer import CONFIG_FILE

    if not output.exists() or resume:
        return False
    if not output.is_dir():
        raise InputError("exists and is not a directory; choose another --output", output)
    if not any(p.name != LOCK_FILE for p in output.iterdir()):
        return False
    if not overwrite:
        raise InputError("already exists; pass --overwrite to replace it or --resume to continue it", output)
    if not (output / CONFIG_FILE).is_file():
        raise InputError(f"not a rankwise training directory (no {CONFIG_FILE}); refusing to delete it", output)
    return True


@contextmanager
def training_directory(output: Path, overwrite: bool, resume: bool) -> Iterator[Path]:
    """The training directory, checked, held under an exclusive lock while training (a second ``rankwise
    train`` on it stops at once instead of writing over the first) and emptied first under --overwrite."""
    empty_first = check_output(output, overwrite, resume)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("another `rankwise train` is writing this directory; wait for it to finish or "
                             "choose another --output", output) from None
        if empty_first:
            for child in output.iterdir():
                if child.name == LOCK_FILE:
                    continue
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        yield output

def override(cfg, name: str, value) -> None:
    """A command-line training setting: it wins over the config, every stage's included."""
    setattr(cfg.training, name, value)
    for stage in cfg.stages:
        stage["training"] = {**stage.get("training", {}), name: value}


@app.command()
def train(
    config: Path = typer.Argument(..., help="Training config (YAML); see examples/train-*.yaml."),
    output: Optional[Path] = typer.Option(None, help="Model directory to write (default: the config's output)."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after N optimisation steps (overrides the config)."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after this much wall time (overrides the config)."),
    batch_size: Optional[int] = typer.Option(None, help="Groups (cross-encoder, embedding, SFT) or prompts (GRPO) "
                                                        "per step "
                                                        "(overrides the config; larger on a GPU)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in the output directory."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
) -> None:
    """Train a reranker from a config; write a model directory (config, checkpoints and results beside it)."""
    from rankwise.train.config import load_config

    cfg = load_config(config)
    if max_steps is not None:
        if max_steps < 1:
            raise InputError(f"--max-steps must be at least 1, got {max_steps}")
        override(cfg, "max_steps", max_steps)
    if max_minutes is not None:
        if max_minutes <= 0:
            raise InputError(f"--max-minutes must be positive, got {max_minutes}")
        override(cfg, "max_minutes", max_minutes)
    if batch_size is not None:
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        override(cfg, "batch_size", batch_size)
    target = output or (Path(cfg.output) if cfg.output else None)
    if target is None:
        raise InputError("give --output DIR (the config names no 'output')", config)
    if resume and overwrite:
        raise InputError("--resume continues a directory, --overwrite replaces it: pass one of them")
    from rankwise.train.stages import train as train_stages

    with training_directory(target, overwrite, resume):
        stages = f" in {len(cfg.stages)} stages ({', '.join(s['name'] for s in cfg.stages)})" if cfg.stages else ""
        err.print(f"[bold]train {cfg.kind}[/]{stages} from {cfg.model} -> {target}")
        results = train_stages(cfg, target, resume=resume)
    summary = {k: results[k] for k in ("steps", "seconds", "train_loss", "mean_reward") if results.get(k) is not None}
    err.print(f"wrote {target}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in summary.items()))
    dev = results.get("dev")
    if dev:
        err.print("dev: " + "  ".join(f"{k} {v:.4f}" for k, v in dev.items() if isinstance(v, float)))
