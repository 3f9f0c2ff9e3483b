"""Helpers shared by CLI commands."""

from __future__ import annotations

import json
import logging
import sys
import platform
from pathlib import Path

from rankwise.errors import InputError


def guard_output(path: str | Path, overwrite: bool, inputs: tuple[str | Path | None, ...] = ()) -> Path:
    """Refuse to overwrite a user's file without --overwrite, and never write over an input."""
    out = Path(path)
    for given in inputs:
        if given is not None and Path(given).exists() and out.exists() and out.resolve() == Path(given).resolve():
            raise InputError("the output would overwrite an input file; choose another --output", out)
    if out.exists() and not overwrite:
        raise InputError("already exists; pass --overwrite to replace it", out)
    return out


def write_json(data: dict, path: str | Path) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def cpu_name() -> str:
    """The CPU's model name and feature class (what benchmark figures are quoted beside)."""
    try:
        from rankwise.llm.hardware import cpu_info

        return cpu_info().describe()
    except Exception:  # pragma: no cover - exotic platforms
        return platform.processor() or platform.machine()


def print_evaluation(run: dict, dataset, metrics: str, console) -> None:
    """Print the measures of ``run`` over the dataset's judged queries it holds (when it has qrels)."""
    if dataset is None or not dataset.qrels:
        return
    from rankwise.eval import evaluate

    qrels = {q: dataset.qrels[q] for q in run if q in dataset.qrels}
    scores = evaluate(run, qrels, metrics.replace(",", " ").split())
    console.print("  ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f"  (over {len(qrels)} queries)")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def notices_to_stderr() -> None:
    """Show rankwise's progress notices (assembling, converting) on stderr."""
    log = logging.getLogger("rankwise")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("rankwise: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
