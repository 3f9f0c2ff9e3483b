"""Batching across queries: the same run one query at a time and with ``query_batch`` queries at once.

    python benchmarks/query_batching.py --model qwen2.5-0.5b --queries 10 --top-k 20 \
        --methods pointwise.yes_no listwise.window --output benchmarks/results/query_batching.json

For each method: the rankings and scores of both runs must be identical (checked; the script fails if not),
and it reports how many calls reached the engine, the prompts they held, and the wall-clock seconds of each
run, on this machine's CPU class. On a CPU the engine is busy either way, so the saving is small; on a GPU,
many queries' prompts in one call is what keeps the device full.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rankwise.data import load_dataset
from rankwise.llm import load_backend
from rankwise.llm.hardware import cpu_info
from rankwise.pipeline import load_reranker, run


class CallCounter:
    """Counts the calls that reach the engine (each primitive invocation) and the prompts they hold."""

    def __init__(self, backend):
        self.backend, self.calls, self.prompts = backend, 0, 0

    def __getattr__(self, item):
        return getattr(self.backend, item)

    def _count(self, prompts) -> None:
        self.calls += 1
        self.prompts += len(prompts)

    def choice_logprobs(self, prompts, choices):
        self._count(prompts)
        return self.backend.choice_logprobs(prompts, choices)

    def generate(self, prompts, max_new_tokens=64, stop=None):
        self._count(prompts)
        return self.backend.generate(prompts, max_new_tokens, stop)


def measure(method: str, engine, requests, top_k: int, query_batch: int) -> dict:
    counter = CallCounter(engine)
    reranker = load_reranker(method, engine.name, backend=counter)
    started = time.perf_counter()
    result = run(reranker % top_k, requests, query_batch=query_batch)
    return {"seconds": round(time.perf_counter() - started, 2), "engine_calls": counter.calls,
            "prompts": counter.prompts, "rankings": {q: [r.docids, list(r.scores)] for q, r in result.rankings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--dataset", default="dl19")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=["pointwise.yes_no", "listwise.window"])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/query_batching.json"))
    args = parser.parse_args()

    ds = load_dataset(args.dataset)
    requests = [r for r in ds.requests("bm25", top_k=args.top_k) if r.query.qid in ds.qrels][:args.queries]
    engine = load_backend(args.model, engine="transformers", cache=False)
    rows = []
    for method in args.methods:
        load_reranker(method, engine.name, backend=engine).rerank(requests[0].query, requests[0].candidates[:3])
        one = measure(method, engine, requests, args.top_k, 1)
        together = measure(method, engine, requests, args.top_k, len(requests))
        identical = one.pop("rankings") == together.pop("rankings")
        rows.append({"method": method, "identical": identical, "one_at_a_time": one, "batched": together})
        print(json.dumps(rows[-1]))
        if not identical:
            raise SystemExit(f"{method}: batched rankings differ from one query at a time")
    report = {"model": args.model, "engine": engine.engine, "dtype": engine.dtype, "dataset": args.dataset,
              "queries": len(requests), "top_k": args.top_k, "cpu": cpu_info().describe(), "methods": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
