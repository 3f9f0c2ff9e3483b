"""The headline methods table and figure, built from a matrix's stored cells without rerunning anything.

One row per method and model on each dataset, every row on the same first-stage candidates: nDCG@10 with a
95% bootstrap interval over queries, the paired randomisation test against the first stage and against the
best row (among the rows on every judged query), the cost per query and the CPU classes that timed it. A cell
the matrix lists but nobody has finished yet is a row saying so (part-way where a stopped run stored some), with
the options that fill it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rankwise.bench.config import BenchConfig
from rankwise.bench.contention import SHARED_CORES
from rankwise.bench.report import _annotate_apart
from rankwise.bench.resume import timings
from rankwise.bench.runner import FIRST_STAGE, cell_path, partial_path
from rankwise.eval.significance import bootstrap_ci, randomisation_test
from rankwise.plotting import pyplot

MEASURE = "nDCG@10"
NAMES = {"dl19": "TREC DL19 passage", "dl20": "TREC DL20 passage", "scifact": "BEIR SciFact test"}


@dataclass(frozen=True)
class Row:
    """One method on one model on one dataset: its cell, or the options that would fill it (``missing``)."""

    dataset: str
    method: str
    model: str
    top_k: int
    cell: dict | None = None
    missing: str = ""
    part_way: bool = False
    """A stopped run of this missing cell stored some of its queries (its ``.partial.json``); the next run
    resumes after them. How many is left out of the table, which stays what the committed cells give while a
    run adds to them."""

    @property
    def per_query(self) -> dict[str, float]:
        return {q: v[MEASURE] for q, v in (self.cell or {}).get("per_query_metrics", {}).items()}

    @property
    def mean(self) -> float:
        values = list(self.per_query.values())
        return sum(values) / len(values) if values else math.nan


def load_cells(output: Path) -> dict[str, dict]:
    """Every finished cell stored under ``output/cells`` by file name (partial and failed cells left out)."""
    cells = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((output / "cells").glob("*.json"))
             if not p.name.endswith((".partial.json", ".disagree.json"))}
    return {name: c for name, c in cells.items() if "error" not in c}


def headline_rows(config: BenchConfig, output: Path) -> dict[str, list[Row]]:
    """Per dataset: the first stage, then each method of the config in its order (stored or missing), then
    any other stored cell of that first stage (a model trained by ``rankwise train``, run with ``--models``)."""
    stored = load_cells(output)
    stage = config.first_stages[0]
    out: dict[str, list[Row]] = {}
    for dataset in config.datasets:
        name = cell_path(output, config, dataset, stage, None).name
        rows = [Row(dataset, "BM25" if stage == "bm25" else stage, "", config.top_k, stored.get(name),
                    _fill(dataset, "", "none"))]
        listed = {name}
        for spec in (s for s in config.methods if config.runs_on(s, dataset)):
            path = cell_path(output, config, dataset, stage, spec)
            listed.add(path.name)
            rows.append(Row(dataset, spec.name, spec.model, spec.top_k, stored.get(path.name),
                            _fill(dataset, spec.model, spec.name), partial_path(path).exists()))
        rows += [Row(dataset, c["method"], c["model"], c["top_k"], c) for name, c in stored.items()
                 if name not in listed and c["dataset"] == dataset and c["first_stage"] == stage
                 and c["method"] != FIRST_STAGE]
        out[dataset] = rows
    return out


def _fill(dataset: str, model: str, method: str) -> str:
    """The options that make ``rankwise bench`` run this one cell."""
    return f"--datasets {dataset}" + (f" --models {model}" if model else "") + f" --only {method}"


def best_row(rows: Sequence[Row]) -> Row | None:
    """The row with the highest mean among those scored on every query the first stage has."""
    everything = len(rows[0].per_query) if rows and rows[0].cell else 0
    full = [r for r in rows if r.cell and len(r.per_query) == everything]
    return max(full, key=lambda r: r.mean) if full else None


def p_value(a: Row | None, b: Row) -> float | None:
    """The paired randomisation test of b against a over the queries both hold; None without them."""
    if a is None or a is b or not a.cell or not b.cell:
        return None
    queries = [q for q in b.per_query if q in a.per_query]
    return randomisation_test([a.per_query[q] for q in queries], [b.per_query[q] for q in queries]) if queries else None


def _p(p: float | None) -> str:
    return "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _columns(row: Row, first: Row, best: Row | None) -> list[str]:
    model = row.model + (" (trained)" if row.model and ("/" in row.model or Path(row.model).is_dir()) else "")
    head = [row.method if row is first else f"`{row.method}`", model, f"top-{row.top_k}"]
    if row.cell is None:
        state = "part-way (its stored queries are kept), resumes with" if row.part_way else "not run yet:"
        return head + [f"{state} `{row.missing}`"] + [""] * 7
    low, high = bootstrap_ci(list(row.per_query.values()))
    timed = [t for t in timings(row.cell) if t.get("queries") == row.cell["queries"]] or timings(row.cell)
    is_first = row is first
    cost = row.cell.get("per_query", {})
    hits, answers = row.cell.get("cache_hits", 0), round(cost.get("calls", 0) * row.cell["queries"])
    warm = f" ({hits} of {answers} answers cached)" if hits else ""
    total = len(first.per_query) if first.cell else row.cell["queries"]
    queries = str(row.cell["queries"]) if row.cell["queries"] == total else f"{row.cell['queries']} of {total}"
    return head + [f"{row.mean:.4f} [{low:.3f}, {high:.3f}]",
                   "" if is_first else _p(p_value(first, row)),
                   "best" if row is best else _p(p_value(best, row)),
                   "" if is_first else f"{cost.get('calls', 0):.1f}",
                   "" if is_first else f"{cost.get('computed_tokens', 0):,.0f}",
                   "" if is_first else "; ".join(_seconds(t) for t in timed) + warm,
                   "" if is_first else "; ".join(t.get("cpu_class") or t.get("cpu", "") for t in timed)
                   + (f", {SHORT_DTYPES.get(row.cell['dtype'], row.cell['dtype'])}" if row.cell.get("dtype") else ""),
                   queries]


def _seconds(timing: dict) -> str:
    """Seconds per query, flagged when other work shared the CPU: other processes kept more than
    :data:`SHARED_CORES` cores busy (cells timed before that was measured: a load average above the cores)."""
    seconds = f"{timing['seconds_per_query']:.2f}"
    if "other_cores" in timing:
        shared = timing["other_cores"] > SHARED_CORES
        return seconds + (f" (shared: others busy {timing['other_cores']:.1f} cores)" if shared else "")
    busy = timing.get("cores") and timing.get("load", 0.0) > timing["cores"]
    return seconds + (f" (busy: load {timing['load']:.1f})" if busy else "")


HEAD = ["method", "model", "candidates", "nDCG@10 [95% CI]", "p vs BM25", "p vs best", "prompts/q",
        "computed tokens/q", "s/q", "CPU class, dtype", "queries"]
SHORT_DTYPES = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}
"""The dtype a cell's nDCG@10 was computed in (``dtype: auto`` picks bf16 only where the CPU computes it
natively): bf16 and fp32 rankings of one model differ by more than the engines' noise."""


def headline_markdown(rows: dict[str, list[Row]], command: str) -> str:
    """One table per dataset, then how to fill the cells not run yet."""
    parts = []
    for dataset, group in rows.items():
        if not group:
            continue
        first, best = group[0], best_row(group)
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        lines += ["| " + " | ".join(_columns(r, first, best)) + " |" for r in _merge_missing(group)]
        parts.append(f"**{NAMES.get(dataset, dataset)}**\n\n" + "\n".join(lines) + "\n")
    missing = [r for group in rows.values() for r in group if r.cell is None]
    part_way = sum(r.part_way for r in missing)
    parts.append(f"Every cell: `{command}` (finished cells are skipped, so it resumes); one cell: the same command "
                 f"with the options its row shows. {len(missing)} cell(s) not finished"
                 + (f" ({part_way} part-way)" if part_way else "") + ".\n")
    return "\n".join(parts)


def _merge_missing(rows: Sequence[Row]) -> list[Row]:
    """Consecutive missing rows of one method become one row naming its models, filled by one command."""
    out: list[Row] = []
    for row in rows:
        last = out[-1] if out else None
        if (row.cell is None and last is not None and last.cell is None and last.method == row.method and last.model
                and not row.part_way and not last.part_way):
            out[-1] = Row(row.dataset, row.method, f"{last.model}, {row.model}", row.top_k, None,
                          f"--datasets {row.dataset} --only {row.method}")
        else:
            out.append(row)
    return out


def headline_figure(rows: dict[str, list[Row]], path: Path) -> Path:
    """nDCG@10 against seconds per query (log), one panel per dataset, 95% intervals as error bars, the first
    stage as a line with its interval shaded; written as PNG."""
    plt = pyplot(required_by="bench")
    from matplotlib.ticker import FuncFormatter

    groups = {d: g for d, g in rows.items() if any(r.cell for r in g[1:])}
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(6.5 * max(len(groups), 1), 5), squeeze=False)
    for ax, (dataset, group) in zip(axes[0], groups.items()):
        first = group[0]
        if first.cell:
            low, high = bootstrap_ci(list(first.per_query.values()))
            ax.axhline(first.mean, color="grey", linestyle=":", label=f"{first.method} alone (shaded: its interval)")
            ax.axhspan(low, high, color="grey", alpha=0.12)
        done = [r for r in group[1:] if r.cell]
        models = list(dict.fromkeys(r.model for r in done))
        for i, (model, marker) in enumerate(zip(models, itertools.cycle("o^sDvP*X"))):
            mine = [r for r in done if r.model == model]
            xs = [max(timings(r.cell)[0]["seconds_per_query"], 1e-3) for r in mine]
            cis = [bootstrap_ci(list(r.per_query.values())) for r in mine]
            ax.errorbar(xs, [r.mean for r in mine], yerr=[[r.mean - c[0] for r, c in zip(mine, cis)],
                                                          [c[1] - r.mean for r, c in zip(mine, cis)]],
                        fmt=marker, color=f"C{i % 10}", capsize=3, label=model)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        _annotate_apart(ax, [r.method for r in done],
                        [(max(timings(r.cell)[0]["seconds_per_query"], 1e-3), r.mean) for r in done], fontsize=7)
        ax.set_xlabel("seconds per query (log)")
        ax.set_ylabel("nDCG@10 (95% bootstrap interval)")
        ax.set_title(f"{NAMES.get(dataset, dataset)}, {first.method} candidates")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replace_marked(text: str, body: str, name: str = "headline") -> str:
    """``text`` with what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {start} ... {end} markers")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)
