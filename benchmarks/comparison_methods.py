"""Pairwise and setwise methods on TREC DL BM25 candidates (effectiveness and cost), and llm-rankers side by side.

    python benchmarks/comparison_methods.py methods --datasets dl19 --model qwen2.5-0.5b \
        --top-k 10 --k 10 --max-queries 5 --passage-tokens 64
    python benchmarks/comparison_methods.py llm-rankers --dataset dl19 --model smollm2-135m \
        --top-k 20 --k 10 --max-queries 3 --passage-tokens 64

``methods``: one JSON per (dataset, model, method, settings) under --out; a finished cell is skipped on
re-run. ``llm-rankers``: pairwise heap sort and setwise heap sort of rankwise and of llm-rankers
(``pip install llm-rankers --no-deps``; it is never a rankwise dependency) on the same candidates, cut to
the same passage length with the same tokenizer, from the same model directory, query by query in
turns, so machine load falls on both alike; rankwise runs twice, in the dtype it picks for this CPU and
in llm-rankers' float32, so the gain from the dtype and the gain from the method are told apart. Both
write the Markdown report (--table) from every stored cell. The output cache is off: costs are cold
costs. Seconds are wall-clock; CPU seconds are this process's, which other load disturbs less.
--threads (default 1) sets torch's threads: on a 2-core machine that others share, 2 threads spin-wait
for each other and one 340-token prompt took ~20x the CPU time of 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from common import MEASURE, add_output_options, first_stage_run, judged_requests, set_up, write_report

from rankwise.cli.common import cpu_name
from rankwise.eval import evaluate
from rankwise.llm import load_backend
from rankwise.methods import build_method
from rankwise.pipeline import run
from rankwise.types import Candidate, Request

METHODS = ["pairwise.allpairs", "pairwise.heapsort", "pairwise.sliding",
           "setwise.heapsort", "setwise.bubblesort", "setwise.reasoning"]




def _common(args, dataset: str, model: str, n_queries: int, backend) -> dict:
    return {"dataset": dataset, "model": model, "top_k": args.top_k, "k": args.k, "queries": n_queries,
            "threads": args.threads,
            "passage_tokens": args.passage_tokens, "engine": backend.engine, "dtype": backend.dtype,
            "cpu": cpu_name(), "command": "python benchmarks/comparison_methods.py " + shlex.join(sys.argv[1:])}


def run_methods(args) -> None:
    backend = load_backend(args.model, engine=args.engine, dtype=args.dtype)
    for dataset in args.datasets:
        requests, qrels = judged_requests(dataset, args.top_k, args.max_queries)
        bm25 = evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE]
        for method in args.methods:
            rule = f"_{args.rule}" if args.rule != "prp" and method.startswith("pairwise") else ""
            path = args.out / (f"methods_{dataset}_{args.model}_{backend.dtype}_{method}{rule}_top{args.top_k}_k{args.k}"
                               f"_q{len(requests)}_p{args.passage_tokens}_r{args.reasoning_tokens}_t{args.threads}.json")
            if path.exists():
                continue
            opts = {"k": args.k, "max_passage_tokens": args.passage_tokens}
            if method == "setwise.reasoning":
                opts["reasoning_tokens"] = args.reasoning_tokens
            if method.startswith("pairwise"):
                opts["rule"] = args.rule
            load0, cpu0 = os.getloadavg()[0], time.process_time()
            result = run(build_method(method, backend, **opts) % args.top_k, requests)
            n, u = len(requests), result.usage
            cell = _common(args, dataset, args.model, n, backend) | {
                "kind": "methods", "method": method + (f" (rule={args.rule})" if rule else ""),
                "reasoning_tokens": args.reasoning_tokens,
                "bm25": bm25, "ndcg10": evaluate(result.run(), qrels, [MEASURE])[MEASURE],
                "calls": u.calls / n, "prompt_tokens": u.prompt_tokens / n, "computed_tokens": u.computed_tokens / n,
                "completion_tokens": u.completion_tokens / n, "parse_failures": u.parse_failures,
                "seconds": result.wall_seconds / n, "cpu_seconds": (time.process_time() - cpu0) / n,
                "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
            path.write_text(json.dumps(cell, indent=1))
            print(json.dumps({k: cell[k] for k in ("dataset", "method", "ndcg10", "calls", "seconds")}), flush=True)


def _truncated(requests: list[Request], backend, tokens: int) -> list[Request]:
    """The same passages for both toolkits: cut once with the model's tokenizer."""
    return [Request(r.query, tuple(Candidate(c.docid, backend.truncate(c.content, tokens)) for c in r.candidates))
            for r in requests]


def run_llm_rankers(args) -> None:
    from llmrankers.pairwise import PairwiseLlmRanker
    from llmrankers.rankers import SearchResult
    from llmrankers.setwise import SetwiseLlmRanker

    from rankwise.bench.peers import llama_view
    from rankwise.llm.models import hf_dir_for_gguf, resolve_model

    resolved = resolve_model(args.model)
    model_dir = str(llama_view(Path(resolved.hf_dir or hf_dir_for_gguf(resolved.gguf_file))))
    # rankwise loads the same directory: once in the dtype it picks here, once in llm-rankers' float32
    backends = {"rankwise": load_backend(args.model, engine="transformers", dtype=args.dtype)}
    if backends["rankwise"].dtype != "float32":
        backends["rankwise-fp32"] = load_backend(args.model, engine="transformers", dtype="float32")
    requests, qrels = judged_requests(args.dataset, args.top_k, args.max_queries)
    requests = _truncated(requests, backends["rankwise"], args.passage_tokens)
    bm25 = evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE]
    theirs = {"pairwise.heapsort": PairwiseLlmRanker(model_dir, None, "cpu", method="heapsort", k=args.k),
              "setwise.heapsort": SetwiseLlmRanker(model_dir, None, "cpu", num_child=args.set_size - 1, k=args.k,
                                                   method="heapsort", scoring="generation")}
    opts = {"pairwise.heapsort": {}, "setwise.heapsort": {"set_size": args.set_size}}
    for method in args.methods:
        ours = {name: build_method(method, b, k=args.k, max_passage_tokens=10**6, **opts[method])
                for name, b in backends.items()}
        toolkits = list(ours) + ["llm-rankers"]
        runs: dict[str, dict] = {t: {} for t in toolkits}
        secs, cpu, calls = dict.fromkeys(toolkits, 0.0), dict.fromkeys(toolkits, 0.0), dict.fromkeys(toolkits, 0)
        load0 = os.getloadavg()[0]
        for r in requests:  # the toolkits take turns, query by query
            for toolkit in toolkits:
                t, c = time.perf_counter(), time.process_time()
                if toolkit == "llm-rankers":
                    ranker = theirs[method]
                    out = ranker.rerank(r.query.text, [SearchResult(docid=x.docid, score=x.score, text=x.text)
                                                       for x in r.candidates])
                    docids = [h.docid for h in out]
                    calls[toolkit] += ranker.total_compare * (2 if method.startswith("pairwise") else 1)
                else:
                    ranking = ours[toolkit].rerank(r.query, r.candidates, args.top_k)
                    docids = ranking.docids
                    calls[toolkit] += ranking.usage.calls
                secs[toolkit] += time.perf_counter() - t
                cpu[toolkit] += time.process_time() - c
                runs[toolkit][r.query.qid] = {d: float(len(docids) - i) for i, d in enumerate(docids)}
        n = len(requests)
        for toolkit, toolkit_run in runs.items():
            cell = _common(args, args.dataset, args.model, n, backends["rankwise"]) | {
                "kind": "llm-rankers", "toolkit": toolkit, "method": method, "set_size": args.set_size,
                "bm25": bm25, "ndcg10": evaluate(toolkit_run, qrels, [MEASURE])[MEASURE], "calls": calls[toolkit] / n,
                "seconds": secs[toolkit] / n, "cpu_seconds": cpu[toolkit] / n,
                "dtype": backends[toolkit].dtype if toolkit in backends else "float32",
                "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
            path = args.out / (f"llmrankers_{args.dataset}_{args.model}_{method}_{toolkit}"
                               f"_top{args.top_k}_k{args.k}_q{n}_p{args.passage_tokens}_t{args.threads}.json")
            path.write_text(json.dumps(cell, indent=1))
            print(json.dumps({k: cell[k] for k in ("toolkit", "method", "ndcg10", "calls", "seconds")}), flush=True)


def report(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# Pairwise and setwise reranking: effectiveness and cost\n",
             "Generated by `benchmarks/comparison_methods.py` from the cells in `benchmarks/out/comparison/`; "
             "the command of each block is given with it. Seconds are wall-clock per query on a **2-core machine "
             "shared with other jobs** (the load column is the 1-minute load average before/after the cell; "
             "2.0 would mean the two cores were fully used by others): compare seconds within one block only. "
             "CPU s/q is this process's CPU time, which that load disturbs less. torch ran with 1 thread "
             "(`--threads 1`): on two busy cores, 2 threads spin-wait for each other.\n"]
    methods = [c for c in cells if c["kind"] == "methods"]
    for command in dict.fromkeys(c["command"] for c in methods):
        block = [c for c in methods if c["command"] == command]
        c0 = block[0]
        lines += [f"\n## {c0['model']} ({c0['engine']}, {c0['dtype']}), BM25 top-{c0['top_k']}, k={c0['k']}, "
                  f"{c0['queries']} queries, passages cut to {c0['passage_tokens']} tokens\n",
                  f"CPU: {c0['cpu']}. Command: `{command}`\n",
                  "| dataset | method | BM25 nDCG@10 | nDCG@10 | prompts/q | prompt tok/q | computed tok/q "
                  "| completion tok/q | parse failures | s/q | CPU s/q | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in block:
            lines.append(f"| {c['dataset']} | {c['method']} | {c['bm25']:.4f} | {c['ndcg10']:.4f} | {c['calls']:.1f} | "
                         f"{c['prompt_tokens']:.0f} | {c['computed_tokens']:.0f} | {c['completion_tokens']:.0f} | "
                         f"{c['parse_failures']} | {c['seconds']:.1f} | {c['cpu_seconds']:.1f} | "
                         f"{c['load'][0]}/{c['load'][1]} |")
    side = [c for c in cells if c["kind"] == "llm-rankers"]
    for command in dict.fromkeys(c["command"] for c in side):
        block = [c for c in side if c["command"] == command]
        c0 = block[0]
        lines += [f"\n## Side by side with llm-rankers 0.0.2: {c0['model']}, {c0['dataset']} BM25 top-{c0['top_k']}, "
                  f"k={c0['k']}, {c0['queries']} queries, passages cut to {c0['passage_tokens']} tokens\n",
                  f"CPU: {c0['cpu']}. Command: `{command}`. Same candidates and model directory; the "
                  "toolkits take turns query by query. llm-rankers loads float32 on CPU and generates one token "
                  "per prompt (pairwise: both orders as a batch of 2; setwise: one prompt per call, "
                  f"{c0['set_size']} passages); rankwise reads the label log-probabilities and batches the "
                  "prompts of one heap depth; `rankwise-fp32` is rankwise in llm-rankers' dtype.\n",
                  "| method | toolkit | dtype | BM25 nDCG@10 | nDCG@10 | prompts/q | s/q | CPU s/q | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in block:
            lines.append(f"| {c['method']} | {c['toolkit']} | {c['dtype']} | {c['bm25']:.4f} | {c['ndcg10']:.4f} | "
                         f"{c['calls']:.1f} | {c['seconds']:.1f} | {c['cpu_seconds']:.1f} | "
                         f"{c['load'][0]}/{c['load'][1]} |")
        for method in dict.fromkeys(c["method"] for c in block):
            by = {c["toolkit"]: c for c in block if c["method"] == method}
            for toolkit in ("rankwise", "rankwise-fp32"):
                if toolkit in by and "llm-rankers" in by:
                    lines.append(f"\n{method}: llm-rankers / {toolkit}: wall time "
                                 f"{by['llm-rankers']['seconds'] / by[toolkit]['seconds']:.2f}x, CPU time "
                                 f"{by['llm-rankers']['cpu_seconds'] / by[toolkit]['cpu_seconds']:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("methods", "llm-rankers"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="qwen2.5-0.5b" if name == "methods" else "smollm2-135m")
        p.add_argument("--top-k", type=int, default=20, help="BM25 candidates reranked per query")
        p.add_argument("--k", type=int, default=10, help="depth sorted by heap/bubble/sliding")
        p.add_argument("--max-queries", type=int, default=10)
        p.add_argument("--passage-tokens", type=int, default=128)
        p.add_argument("--dtype", default="auto")
        add_output_options(p, "comparison", "pairwise_setwise.md")
    m = sub.choices["methods"]
    m.add_argument("--datasets", nargs="+", default=["dl19"])
    m.add_argument("--methods", nargs="+", default=METHODS)
    m.add_argument("--engine", default="transformers")
    m.add_argument("--reasoning-tokens", type=int, default=128)
    m.add_argument("--rule", default="prp", choices=["prp", "probability"],
                   help="pairwise methods: PRP's both-orders rule, or the mean of the two orders' probabilities")
    lr = sub.choices["llm-rankers"]
    lr.add_argument("--dataset", default="dl19")
    lr.add_argument("--set-size", type=int, default=4, help="passages per setwise prompt (llm-rankers num_child+1)")
    lr.add_argument("--methods", nargs="+", default=["pairwise.heapsort", "setwise.heapsort"],
                    choices=["pairwise.heapsort", "setwise.heapsort"])
    args = ap.parse_args()
    set_up(args.threads, args.out)
    (run_methods if args.command == "methods" else run_llm_rankers)(args)
    write_report(args.table, lambda: report(args.out))


if __name__ == "__main__":
    main()
