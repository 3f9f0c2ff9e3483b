"""Memory of loading a model and reranking one request: ``python benchmarks/memory_load.py`` writes
benchmarks/results/memory_load.md.

Each measurement is a fresh child process that loads ``pointwise.yes_no`` on the transformers engine
(``dtype=auto``) through ``rankwise.pipeline.load_reranker`` and reranks one DL19 query's BM25 top 5; it
reports its resident memory (VmRSS) after the load and after the rerank, and its peak (VmHWM) — the peak is
what the kernel's out-of-memory killer sees. ``--models`` takes registry names, directories, or
``LABEL=MODEL`` (e.g. a converted fp32 copy's directory, to measure a bf16 run reading it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "memory_load.md"

CHILD = r"""
import json, sys, time
from rankwise.data import load_dataset
from rankwise.pipeline import load_reranker

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024 ** 2
started = time.perf_counter()
reranker = load_reranker("pointwise.yes_no", sys.argv[1], engine="transformers", dtype="auto", cache=False)
loaded = status("VmRSS:")
load_s = time.perf_counter() - started
ds = load_dataset("dl19")
request = next(r for r in ds.requests("bm25", top_k=5) if r.query.qid in ds.qrels)
reranker.rerank(request.query, request.candidates)
print(json.dumps({"loaded_gb": loaded, "after_rerank_gb": status("VmRSS:"), "peak_gb": status("VmHWM:"),
                  "load_s": load_s, "dtype": str(reranker.backend.dtype)}))
"""


def measure(model: str, source: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, model], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{model} from {source}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    args = parser.parse_args()
    from rankwise.llm.hardware import cpu_info

    rows = ["| model | dtype | resident after load (GB) | resident after one rerank (GB) | peak (GB) | load s |",
            "|---|---|---:|---:|---:|---:|"]
    for item in args.models.split(","):
        label, model = item.split("=", 1) if "=" in item else (item, item)
        m = measure(model, ROOT / "src")
        rows.append(f"| {label} | {m['dtype']} | {m['loaded_gb']:.2f} | {m['after_rerank_gb']:.2f} | "
                    f"{m['peak_gb']:.2f} | {m['load_s']:.1f} |")
        print(rows[-1], flush=True)
    cpu = cpu_info()
    command = "python benchmarks/memory_load.py " + " ".join(sys.argv[1:])
    OUT.write_text("\n".join([
        "# Memory of loading a model (issue 36)", "",
        f"Regenerate: `{command}` ({date.today()}). CPU: **{cpu.describe()}, {os.cpu_count()} cores**. Each row "
        "is a fresh process: pointwise.yes_no on the transformers engine, dtype auto, one DL19 query's BM25 "
        "top 5; resident = VmRSS, peak = VmHWM (what the out-of-memory killer sees). \"fp32 copy\": the "
        "GGUF model's converted fp32 directory, which a bf16 run read (and cast) whenever it was the copy in the "
        "cache: the whole fp32 file is mapped while casting, so the peak is far above what stays resident. "
        "\"bf16 copy\": what a bf16 run loads now (derived once from the fp32 copy, or converted in bf16): its "
        "weights are mapped, not copied, so resident memory grows as the first rerank touches them and the peak "
        "is what stays resident.", "", *rows, ""]),
        encoding="utf-8")


if __name__ == "__main__":
    main()
