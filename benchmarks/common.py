"""What the benchmark scripts share: judged candidates, the first-stage run, set-up, the report file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from rankwise.data import load_dataset
from rankwise.types import Request

HERE = Path(__file__).resolve().parent
MEASURE = "nDCG@10"
NOTES = "\n## Notes"  # a hand-written section at the end of a report, kept when the tables are rewritten


def judged_requests(dataset: str, top_k: int, max_queries: int | None,
                    first_stage: str = "bm25") -> tuple[list[Request], dict]:
    """The first ``max_queries`` judged queries' top-``top_k`` candidates, and their qrels."""
    ds = load_dataset(dataset)
    requests = [r for r in ds.requests(first_stage, top_k=top_k) if r.query.qid in ds.qrels][:max_queries]
    return requests, {r.query.qid: ds.qrels[r.query.qid] for r in requests}


def first_stage_run(requests: list[Request]) -> dict:
    """The candidates' own order as a run (what reranking is compared with)."""
    return {r.query.qid: {c.docid: float(len(r.candidates) - i) for i, c in enumerate(r.candidates)}
            for r in requests}


def add_output_options(parser, name: str, table: str | None = None) -> None:
    """--threads, --out (cells under benchmarks/out/NAME) and --table (benchmarks/results/TABLE)."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 on a shared machine: 2 threads on 2 busy cores spin-wait)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / name)
    parser.add_argument("--table", type=Path, default=HERE / "results" / (table or f"{name}.md"))


def set_up(threads: int, out: Path) -> None:
    """Offline hub, ``threads`` torch threads, the output folder."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)


def write_report(table: Path, report: Callable[[], str]) -> None:
    """Rewrite the generated part of ``table``, keeping its hand-written notes section; print it."""
    table.parent.mkdir(parents=True, exist_ok=True)
    old = table.read_text() if table.exists() else ""
    notes = NOTES + old.split(NOTES, 1)[1] if NOTES in old else ""
    table.write_text(report() + notes)
    print(table.read_text())
