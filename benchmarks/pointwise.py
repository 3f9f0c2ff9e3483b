"""Pointwise effectiveness and cost on TREC DL19/DL20 BM25 candidates.

    python benchmarks/pointwise.py --datasets dl19 dl20 --models qwen2.5-0.5b qwen2.5-1.5b \
        --methods pointwise.yes_no pointwise.graded --top-k 20 [--max-queries N] [--variants query_first short]

One JSON per cell under --out (a finished cell is skipped on re-run, so long runs resume), and a
Markdown table (benchmarks/results/pointwise.md by default). The cache is off: costs are cold costs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset
from rankwise.eval import evaluate
from rankwise.llm import load_backend
from rankwise.methods import build_method
from rankwise.pipeline import run
from rankwise.prompts import PROMPT_DIR

HERE = Path(__file__).resolve().parent


def run_cell(dataset: str, model: str, method: str, prompt: str | None, top_k: int, max_queries: int | None,
             engine: str, backend_cache: dict) -> dict:
    ds = load_dataset(dataset)
    requests = [r for r in ds.requests("bm25") if r.query.qid in ds.qrels][:max_queries]
    key = (model, engine)
    if key not in backend_cache:
        backend_cache.clear()
        backend_cache[key] = load_backend(model, engine=engine)
    backend = backend_cache[key]
    reranker = build_method(method, backend, **({"prompt": prompt} if prompt else {}))
    result = run(reranker % top_k, requests)
    qrels = {r.query.qid: ds.qrels[r.query.qid] for r in requests}
    first_stage = {r.query.qid: {c.docid: float(len(r.candidates) - i) for i, c in enumerate(r.candidates)}
                   for r in requests}
    measures = ["nDCG@10", "RR(rel=2)@10"]
    n = len(requests)
    u = result.usage
    return {
        "dataset": dataset, "model": model, "method": method, "prompt": prompt or "default", "top_k": top_k,
        "queries": n, "engine": backend.engine, "dtype": backend.dtype, "cpu": cpu_name(),
        "bm25": evaluate(first_stage, qrels, measures), "reranked": evaluate(result.run(), qrels, measures),
        "per_query": {"forward_passes": u.forward_passes / n, "prompt_tokens": u.prompt_tokens / n,
                      "computed_tokens": u.computed_tokens / n, "seconds": result.wall_seconds / n},
    }


def table(cells: list[dict]) -> str:
    lines = ["| dataset | model | method | prompt | top-k | queries | BM25 nDCG@10 | nDCG@10 | fwd passes/q "
             "| prompt tok/q | computed tok/q | s/q | engine | dtype |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        p = c["per_query"]
        lines.append(f"| {c['dataset']} | {c['model']} | {c['method']} | {c['prompt']} | {c['top_k']} | "
                     f"{c['queries']} | {c['bm25']['nDCG@10']:.4f} | {c['reranked']['nDCG@10']:.4f} | "
                     f"{p['forward_passes']:.1f} | {p['prompt_tokens']:.0f} | {p['computed_tokens']:.0f} | "
                     f"{p['seconds']:.2f} | {c['engine']} | {c['dtype']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-0.5b"])
    ap.add_argument("--methods", nargs="+", default=["pointwise.yes_no", "pointwise.graded"])
    ap.add_argument("--variants", nargs="*", default=[],
                    help="prompt variants besides the default, e.g. query_first short (METHOD.VARIANT templates)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "pointwise")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "pointwise.md")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    backends: dict = {}
    cells = []
    for model in args.models:
        for dataset in args.datasets:
            for method in args.methods:
                prompts = [None] + [f"{method}.{v}" for v in args.variants
                                    if (PROMPT_DIR / f"{method}.{v}.yaml").is_file()]
                for prompt in prompts:
                    name = f"{dataset}_{model}_{method}_{prompt or 'default'}_top{args.top_k}_q{args.max_queries}"
                    path = args.out / f"{name}_{args.engine}.json"
                    if not path.exists():
                        cell = run_cell(dataset, model, method, prompt, args.top_k, args.max_queries,
                                        args.engine, backends)
                        path.write_text(json.dumps(cell, indent=1))
                    cells.append(json.loads(path.read_text()))
                    print(table(cells[-1:]).splitlines()[-1], flush=True)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(f"CPU: {cpu_name()}\n\n{table(cells)}\n")
    print(table(cells))


if __name__ == "__main__":
    main()
