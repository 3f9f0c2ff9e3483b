"""rankwise pointwise.yes_no (engine=auto) against the plain transformers loop, on the same prompts.

    python benchmarks/speed_pointwise.py --dataset dl19 --model qwen2.5-0.5b --top-k 20 --max-queries 10

Both score exactly the same prompt strings (rendered once by rankwise's template); the cache is off.
Writes benchmarks/results/speed_pointwise.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from plain_loop import PlainYesNoLoop

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset
from rankwise.eval import evaluate
from rankwise.llm import hardware, load_backend
from rankwise.llm.models import hf_dir_for_gguf, resolve_model
from rankwise.methods import build_method
from rankwise.types import Ranking

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="dl19")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--max-queries", type=int, default=10)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--dtype", default="auto", help="both runners: auto (fast on this CPU), float32, bfloat16")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "speed_pointwise.md")
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    requests = [r for r in ds.requests("bm25", top_k=args.top_k) if r.query.qid in ds.qrels][:args.max_queries]
    qrels = {r.query.qid: ds.qrels[r.query.qid] for r in requests}

    backend = load_backend(args.model, engine=args.engine, dtype=args.dtype)
    reranker = build_method("pointwise.yes_no", backend)
    prompts = [reranker.prompts(r.query, r.candidates) for r in requests]

    resolved = resolve_model(args.model)
    loop_dtype = hardware.choose_dtype(args.dtype)
    loop = PlainYesNoLoop(str(resolved.hf_dir or hf_dir_for_gguf(resolved.gguf_file)), loop_dtype)
    loop.score(prompts[0][:2])  # warm-up, as for rankwise below
    backend.choice_logprobs(prompts[0][:2], ["Yes", "No"])

    # Alternate query by query so both runners see the same machine load.
    loop_scores, rankings, loop_seconds, rw_seconds = [], [], 0.0, 0.0
    before = backend.usage.copy()
    for request, query_prompts in zip(requests, prompts):
        start = time.perf_counter()
        loop_scores.append(loop.score(query_prompts))
        loop_seconds += time.perf_counter() - start
        start = time.perf_counter()
        rankings.append(reranker.rerank(request.query, request.candidates))
        rw_seconds += time.perf_counter() - start
    spent = backend.usage.copy() - before

    def as_run(orders):
        return {r.query.qid: {d: float(len(o) - i) for i, d in enumerate(o)} for r, o in zip(requests, orders)}

    loop_run = as_run([Ranking.from_scores(r.query, r.candidates, sc.tolist()).docids
                       for r, sc in zip(requests, loop_scores)])
    rw_run = as_run([x.docids for x in rankings])
    m = ["nDCG@10"]
    n = len(requests)
    loop_ndcg, rw_ndcg = evaluate(loop_run, qrels, m)["nDCG@10"], evaluate(rw_run, qrels, m)["nDCG@10"]
    rows = [
        "| runner | engine | dtype | s/query | computed tokens/query | nDCG@10 |",
        "|---|---|---|---|---|---|",
        f"| plain transformers loop (batch 16, sorted, last-position logits) | transformers | "
        f"{str(loop_dtype).replace('torch.', '')} | {loop_seconds / n:.2f} | {loop.tokens / n:.0f} | {loop_ndcg:.4f} |",
        f"| rankwise pointwise.yes_no, engine={args.engine} | {backend.engine} | {backend.dtype} | "
        f"{rw_seconds / n:.2f} | {spent.computed_tokens / n:.0f} | {rw_ndcg:.4f} |",
    ]
    load = os.getloadavg()[0]
    text = (f"CPU: {cpu_name()}; load average at the end {load:.1f}; dtype {args.dtype}; {args.dataset} BM25 top-{args.top_k}, {n} queries, {args.model}; one run\n\n"
            + "\n".join(rows) + f"\n\nratio rankwise / loop seconds: {rw_seconds / loop_seconds:.2f}\n")
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
