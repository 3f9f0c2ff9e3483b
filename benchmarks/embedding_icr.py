"""Rerankers that generate nothing: embedding.cosine vs embedding.e2rank (MiniLM) and attention.icr (Qwen2.5).

    python benchmarks/embedding_icr.py embedding --datasets dl19 dl20 scifact --max-queries 2
    python benchmarks/embedding_icr.py icr --datasets dl19 dl20 --models qwen2.5-0.5b --max-queries 1

``embedding``: BM25 top-100 of DL19, DL20 (the runs shipped with the data) and SciFact (retrieved here with
rankwise's BM25 once, then read from ``--out``); nDCG@10 and milliseconds per query of each method.
``icr``: ICR over BM25 top-100 of DL19/DL20 on each model; nDCG@10, forward passes and tokens per query
(pointwise needs one prompt per candidate: ``top_k``; ICR's tokens/q counts the passages once per pass,
its computed tokens once). One JSON per cell under --out (a finished cell is
skipped on re-run); both write the Markdown report (--table) from every stored cell. Seconds are
wall-clock; CPU seconds are this process's, which other load on the machine disturbs less.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from common import MEASURE, add_output_options, first_stage_run, set_up, write_report

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset, read_run, requests_from_run, write_run
from rankwise.eval import evaluate
from rankwise.methods import build_method
from rankwise.llm import load_backend_for
from rankwise.pipeline import run
from rankwise.types import Request

# name in the report -> (method, options)
EMBEDDING_METHODS = {
    "cosine": ("embedding.cosine", {}),
    "e2rank (m=5, w=0.5; default)": ("embedding.e2rank", {}),
    "e2rank (m=5, w=0: pure PRF)": ("embedding.e2rank", {"m": 5, "query_weight": 0.0}),
    "e2rank (m=20, w=0: paper's m)": ("embedding.e2rank", {"m": 20, "query_weight": 0.0}),
}


def _requests(dataset: str, top_k: int, max_queries: int | None, out: Path) -> tuple[list[Request], dict]:
    ds = load_dataset(dataset)
    if "bm25" in ds.candidates or "bm25" in ds.runs:
        requests = ds.requests("bm25", top_k=top_k)
    else:  # SciFact ships no first stage: BM25 once over its corpus, kept as a TREC run
        run_file = out / f"{ds.name}.bm25.top{top_k}.trec"
        if not run_file.exists():
            from rankwise.retrieve.bm25 import BM25Retriever

            write_run(BM25Retriever(show_progress=False).index(ds.docs).retrieve(ds.judged_queries(), top_k),
                      run_file, tag="bm25")
        requests = requests_from_run(read_run(run_file), ds.queries, ds.docs, top_k)
    requests = [r for r in requests if r.query.qid in ds.qrels][:max_queries]
    return requests, {r.query.qid: ds.qrels[r.query.qid] for r in requests}



def _cell(args, kind: str, dataset: str, model: str, label: str, method: str, opts: dict, requests, qrels,
          backend) -> dict:
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    result = run(build_method(method, backend, **opts) % args.top_k, requests)
    n, u = len(requests), result.usage
    return {"kind": kind, "dataset": dataset, "model": model, "label": label, "method": method, "options": opts,
            "top_k": args.top_k, "queries": n, "threads": args.threads, "engine": backend.engine,
            "dtype": backend.dtype, "cpu": cpu_name(),
            "command": f"python benchmarks/embedding_icr.py {shlex.join(sys.argv[1:])}",
            "bm25": evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE],
            "ndcg10": evaluate(result.run(), qrels, [MEASURE])[MEASURE],
            "calls": u.calls / n, "forward_passes": u.forward_passes / n, "prompt_tokens": u.prompt_tokens / n,
            "computed_tokens": u.computed_tokens / n, "ms": 1000 * result.wall_seconds / n,
            "cpu_ms": 1000 * (time.process_time() - cpu0) / n,
            "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def _store(args, path: Path, make) -> None:
    if path.exists():
        return
    cell = make()
    path.write_text(json.dumps(cell, indent=1))
    print(json.dumps({k: cell[k] for k in ("dataset", "model", "label", "ndcg10", "forward_passes", "ms")}),
          flush=True)


def run_embedding(args) -> None:
    backend = load_backend_for("embedding", args.model)
    for dataset in args.datasets:
        requests, qrels = _requests(dataset, args.top_k, args.max_queries, args.out)
        for label in args.methods:
            method, opts = EMBEDDING_METHODS[label]
            slug = label.split(" ")[0] + "".join(f"_{k}{v}" for k, v in opts.items())
            path = args.out / (f"embedding_{dataset}_{args.model}_{slug}_top{args.top_k}_q{len(requests)}"
                               f"_t{args.threads}.json")
            _store(args, path, lambda: _cell(args, "embedding", dataset, args.model, label, method, opts,
                                             requests, qrels, backend))


def run_icr(args) -> None:
    opts = {"max_passage_tokens": args.passage_tokens, "max_context_tokens": args.context_tokens}
    if args.layers:
        opts["layers"] = args.layers
    for model in args.models:
        backend = load_backend_for("attention", model, dtype=args.dtype)
        for dataset in args.datasets:
            requests, qrels = _requests(dataset, args.top_k, args.max_queries, args.out)
            path = args.out / (f"icr_{dataset}_{model}_{backend.dtype}_top{args.top_k}_p{args.passage_tokens}"
                               f"_c{args.context_tokens}_l{(args.layers or 'all').replace(':', '-')}"
                               f"_q{len(requests)}_t{args.threads}.json")
            _store(args, path, lambda: _cell(args, "icr", dataset, model, "attention.icr", "attention.icr", opts,
                                             requests, qrels, backend))


def _row_order(cell: dict) -> tuple:
    labels = list(EMBEDDING_METHODS)
    return cell["dataset"], cell["model"], labels.index(cell["label"]) if cell["label"] in labels else 0


def report(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# Embedding (cosine, E2Rank) and attention (ICR) reranking: effectiveness and cost\n",
             "Generated by `benchmarks/embedding_icr.py` from the cells in `benchmarks/out/embedding_icr/`. "
             "ms/q is wall-clock per query, on a machine that may be shared (load: 1-minute load average "
             "before/after the cell); CPU ms/q is this process's CPU time. nDCG@10 averages over the queries "
             "run (those with judgments).\n"]
    for kind, title, header in (
            ("embedding", "Bi-encoder reranking of BM25 candidates",
             "| dataset | model | method | queries | BM25 nDCG@10 | nDCG@10 | texts embedded/q | tokens/q | ms/q "
             "| CPU ms/q | load |"),
            ("icr", "In-context reranking (ICR) of BM25 candidates",
             "| dataset | model | dtype | queries | BM25 nDCG@10 | nDCG@10 | forward passes/q | pointwise prompts/q "
             "| computed tok/q | tokens/q | ms/q | CPU ms/q | load |")):
        block = [c for c in cells if c["kind"] == kind]
        for command in dict.fromkeys(c["command"] for c in block):
            rows = sorted((c for c in block if c["command"] == command), key=_row_order)
            c0 = rows[0]
            lines += [f"\n## {title} (top-{c0['top_k']})\n", f"CPU: {c0['cpu']}, torch threads: {c0['threads']}. "
                      f"Command: `{command}`\n", header, "|" + "---|" * (header.count("|") - 1)]
            for c in rows:
                common = f"| {c['dataset']} | {c['model']} |"
                tail = (f"{c['prompt_tokens']:.0f} | {c['ms']:.0f} | {c['cpu_ms']:.0f} | "
                        f"{c['load'][0]}/{c['load'][1]} |")
                if kind == "embedding":
                    lines.append(f"{common} {c['label']} | {c['queries']} | {c['bm25']:.4f} | {c['ndcg10']:.4f} | "
                                 f"{c['calls']:.0f} | {tail}")
                else:
                    lines.append(f"{common} {c['dtype']} | {c['queries']} | {c['bm25']:.4f} | {c['ndcg10']:.4f} | "
                                 f"{c['forward_passes']:.1f} | {c['top_k']} | {c['computed_tokens']:.0f} | {tail}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("embedding", "icr"):
        p = sub.add_parser(name)
        p.add_argument("--top-k", type=int, default=100)
        p.add_argument("--max-queries", type=int, default=None)
        add_output_options(p, "embedding_icr")
    emb = sub.choices["embedding"]
    emb.add_argument("--datasets", nargs="+", default=["dl19", "dl20", "scifact"])
    emb.add_argument("--model", default="minilm-l6")
    emb.add_argument("--methods", nargs="+", default=list(EMBEDDING_METHODS), choices=list(EMBEDDING_METHODS))
    icr = sub.choices["icr"]
    icr.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    icr.add_argument("--models", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-1.5b"])
    icr.add_argument("--dtype", default="auto")
    icr.add_argument("--passage-tokens", type=int, default=128)
    icr.add_argument("--context-tokens", type=int, default=4096)
    icr.add_argument("--layers", default=None, help="all layers unless given: a slice '12:' or a list '3,5'")
    args = parser.parse_args()
    set_up(args.threads, args.out)
    {"embedding": run_embedding, "icr": run_icr}[args.command](args)
    write_report(args.table, lambda: report(args.out))


if __name__ == "__main__":
    main()
