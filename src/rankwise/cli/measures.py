"""What ``evaluate`` and ``compare`` share: measures given in ir-measures syntax, several after one flag,
and the note on which queries an average covers."""

from __future__ import annotations

import math
import re

import click
import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


DEFAULT_METRICS = ["nDCG@10", "RR@10", "R@100"]


METRICS_FLAGS = ("--metrics", "-m")


_MEASURE = re.compile(r"^[^\W\d]\w*(?:\([^()]*\))?(?:@\w+)?$")


_MEASURE_SEP = re.compile(r"[\s,]+(?![^()]*\))")


METRICS_HELP = ("Measures in ir-measures syntax (nDCG@10, RR(rel=2)@10, R@100, AP), several after one flag "
                 "(--metrics nDCG@10 RR@10) or comma-separated, or the flag repeated.")


def _measure_like(token: str) -> bool:
    parts = [p for p in _MEASURE_SEP.split(token) if p]
    return bool(parts) and all(_MEASURE.match(p) for p in parts)


def gather_metrics(args: list[str]) -> list[str]:
    """Join the values after ``--metrics`` into one argument: its first value, then every following
    token shaped like a measure (so ``--metrics nDCG@10 RR@10 R@100`` works as written)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        out.append(token)
        i += 1
        if token == "--":
            out.extend(args[i:])
            break
        if token in METRICS_FLAGS and i < len(args) and not args[i].startswith("-"):
            values = [args[i]]
            i += 1
            while i < len(args) and _measure_like(args[i]):
                values.append(args[i])
                i += 1
            out.append(" ".join(values))
    return out


class MetricsCommand(typer.core.TyperCommand):
    """A command whose ``--metrics`` option takes several space-separated values."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, gather_metrics(list(args)))


def round4(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def coverage_note(coverage) -> None:
    """Say on stderr which queries the averages cover when run and qrels differ (the JSON says it too)."""
    if coverage.missing_from_run or coverage.unjudged_in_run:
        err.print(f"note: {coverage.describe()}")


def convention_header(coverage, other: bool = False) -> str:
    """A table column's title: the queries its averages cover."""
    from rankwise.eval import ALL_QRELS

    all_qrels = (coverage.convention == ALL_QRELS) != other
    judged_in_run = coverage.in_qrels - coverage.missing_from_run
    return f"all {coverage.in_qrels} qrels queries (-c)" if all_qrels else f"{judged_in_run} run queries"
