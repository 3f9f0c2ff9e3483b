"""Long prompts in the transformers engine: deep prefix splits and lone wide suffixes, before and after.

    python benchmarks/long_prompts.py --dataset dl19 --model qwen2.5-0.5b --max-queries 2

The methods whose prompts are long (groupwise.logits: ~20 questions after one group of 10 passages;
listwise.first: one prompt of 20 passages; setwise.heapsort: one prompt of 4 passages per comparison) rerank
the same BM25 candidates with the engine's two policies, alternating query by query so both see the same
load: "before" splits every prompt at most 64 tokens in and fills every suffix pass up to 4 rows with copies
(the engine until this change, set by its constants), "after" splits a prompt scored from 768 tokens on near
its end and runs a suffix wider than 256 tokens alone. Seconds, computed tokens (filler copies not counted),
and whether the two give the same top 10. Writes benchmarks/results/long_prompts.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import judged_requests

import rankwise.llm.engines.transformers as engine
from rankwise.cli.common import cpu_name
from rankwise.llm import load_backend
from rankwise.methods import build_method
from rankwise.types import Usage

HERE = Path(__file__).resolve().parent
POLICIES = {"before": {"DEEP_SPLIT_FROM": 10**9, "BATCHED_WIDTH": 10**9},
            "after": {"DEEP_SPLIT_FROM": engine.DEEP_SPLIT_FROM, "BATCHED_WIDTH": engine.BATCHED_WIDTH}}


def use(policy: str) -> None:
    """Set the engine's constants to ``policy``."""
    for name, value in POLICIES[policy].items():
        setattr(engine, name, value)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="dl19")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--max-queries", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["groupwise.logits", "listwise.first", "setwise.heapsort"])
    ap.add_argument("--table", type=Path, default=HERE / "results" / "long_prompts.md")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    requests, _ = judged_requests(args.dataset, args.top_k, args.max_queries)
    backend = load_backend(args.model, engine="transformers", cache=False)
    rows = ["| method | policy | s/query | computed tokens/query | forward passes/query | same top 10 as before |",
            "|---|---|---|---|---|---|"]
    ratios = []
    for name in args.methods:
        method = build_method(name, backend)
        seconds, spent, tops = {p: 0.0 for p in POLICIES}, {p: Usage() for p in POLICIES}, {p: [] for p in POLICIES}
        for request in requests:
            for policy in POLICIES:
                use(policy)
                before = backend.usage.copy()
                start = time.perf_counter()
                tops[policy].append(method.rerank(request.query, request.candidates).docids[:10])
                seconds[policy] += time.perf_counter() - start
                spent[policy].add(backend.usage.copy() - before)
        n = len(requests)
        same = sum(a == b for a, b in zip(tops["before"], tops["after"]))
        for policy in POLICIES:
            rows.append(f"| `{name}` | {policy} | {seconds[policy] / n:.1f} | {spent[policy].computed_tokens / n:,.0f} | "
                        f"{spent[policy].forward_passes / n:.1f} | {'' if policy == 'before' else f'{same} of {n}'} |")
        ratios.append(f"`{name}`: {seconds['before'] / seconds['after']:.2f}x")
    use("after")
    text = (f"CPU: {cpu_name()}; {backend.dtype}; {args.dataset} BM25 top-{args.top_k}, "
            f"first {len(requests)} judged queries, {args.model}; both policies in one run, alternating query by query; "
            f"load average at the end {os.getloadavg()[0]:.1f}\n\n" + "\n".join(rows)
            + "\n\nbefore / after seconds: " + ", ".join(ratios) + "\n")
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
