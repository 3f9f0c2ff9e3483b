"""Overhead of the Ray executor: `rankwise rerank` in one process against `--executor ray`, same threads in total.

    python benchmarks/ray_overhead.py --max-queries 10 --top-k 20 --workers 2 --threads 2

Both runs rerank the same DL19 BM25 subset with the same method, model, engine and dtype, with the cache off:
the single process with ``--threads`` torch threads, Ray with ``--workers`` workers of threads/workers each
(a local Ray started by the run, as a user gets it). Seconds are wall seconds of the whole command (Python
start, model loading, Ray start-up included) and the reranking time the usage JSON reports. The runs must be
identical. Writes benchmarks/results/ray_overhead.md (target: Ray at most 10% slower).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rankwise.cli.common import cpu_name
from rankwise.data import read_run

HERE = Path(__file__).resolve().parent


def _rerank(args: argparse.Namespace, out: Path, extra: list[str], threads: int) -> dict:
    """Run one `rankwise rerank`; its usage report plus the command's wall seconds."""
    command = [sys.executable, "-m", "rankwise.cli", "rerank", "--dataset", args.dataset, "--run", "bm25",
               "--max-queries", str(args.max_queries), "--top-k", str(args.top_k), "--method", args.method,
               "--model", args.model, "--engine", args.engine, "--dtype", args.dtype, "--no-cache",
               "--output", str(out / "run.trec"), "--usage", str(out / "usage.json"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    report = json.loads((out / "usage.json").read_text())
    return {"command_seconds": seconds, "run": read_run(out / "run.trec"), **report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="dl19")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="pointwise.yes_no")
    ap.add_argument("--engine", default="transformers", help="explicit: auto would measure engines per thread count")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-queries", type=int, default=10)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads in total")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "ray_overhead.md")
    args = ap.parse_args()
    if args.threads % args.workers:
        sys.exit("--threads must be a multiple of --workers (the same threads in total)")

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "local").mkdir()
        (Path(tmp) / "ray").mkdir()
        local = _rerank(args, Path(tmp) / "local", [], args.threads)
        ray = _rerank(args, Path(tmp) / "ray", ["--executor", "ray", "--workers", str(args.workers),
                                                 "--threads-per-worker", str(args.threads // args.workers)],
                      args.threads)
    identical = local.pop("run") == ray.pop("run")
    rows = [("single process", f"1 x {args.threads} threads", local), (
        "--executor ray", f"{args.workers} x {args.threads // args.workers} threads", ray)]
    lines = [
        "# Ray executor overhead",
        "",
        f"Command: `python benchmarks/ray_overhead.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"CPU: {cpu_name()}; load average at the end {os.getloadavg()[0]:.1f}; {args.dataset} BM25 top-{args.top_k}, "
        f"{local['queries']} queries; {args.method} on {args.model} ({local['engine']}, {local['dtype']}); cache off; "
        "one run each, single process first.",
        "",
        "| executor | workers x threads | command s | rerank s | s/query | prompts | computed tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, shape, r in rows:
        lines.append(f"| {name} | {shape} | {r['command_seconds']:.1f} | {r['wall_seconds']:.1f} | "
                     f"{r['seconds_per_query']:.2f} | {r['calls']} | {r['computed_tokens']} |")
    lines += [
        "",
        f"ratio ray / single process: command {ray['command_seconds'] / local['command_seconds']:.2f}, "
        f"rerank {ray['wall_seconds'] / local['wall_seconds']:.2f} (target: at most 1.10). "
        f"Runs identical: {'yes' if identical else 'NO'}.",
        "",
        "command s: the whole `rankwise rerank` process (Python start, model loading; for Ray also starting a "
        "local cluster and its workers). rerank s: what the usage JSON reports (single process: the reranking "
        "loop after the model is loaded; Ray: from submitting the dataset to the last ranking, so the workers' "
        "start-up and model loading are inside it).",
        "",
    ]
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text("\n".join(lines))
    print("\n".join(lines))
    if not identical:
        sys.exit("the Ray run differs from the single-process run")


if __name__ == "__main__":
    main()
