"""Helpers shared by CLI commands."""

from __future__ import annotations

import json
import logging
import sys
import platform
from pathlib import Path


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


def queries_line(report: dict) -> str:
    """'12 queries (4 computed, 8 all from cache)': a usage report's split of computed and cached queries."""
    cached = report["queries_from_cache"]
    return f"{report['queries']} queries ({report['queries'] - cached} computed, {cached} all from cache)"


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
