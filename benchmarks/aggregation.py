"""TSPRank, TourRank and Bradley-Terry (issue 34) beside PRP heap sort, setwise heap sort and RankGPT windows,
as given and shuffled. The grid in benchmarks/results/aggregation.md (BM25 top 20), e.g.:

    python benchmarks/aggregation.py --top-k 20 --passage-tokens 64 --shuffles 1 --threads 2 \
        --dataset dl19 --model qwen2.5-0.5b --max-queries 10 --group pairwise
    python benchmarks/aggregation.py --top-k 20 --passage-tokens 64 --shuffles 1 --threads 2 \
        --dataset dl19 --model qwen2.5-0.5b --max-queries 5 --query-batch 5 --group setwise

One JSON per cell under --out (a finished cell is skipped on re-run); the report (--table) is written from
every stored cell. The pairwise cells share one SQLite output cache: they ask the same prompts (every pair,
both orders; shuffling the input does not change that set), so only the first is a cold run and the others
cost their aggregation; prompts/q counts every prompt asked, model prompts/q those the model ran. "shuffled
(seed s)": each query's candidates in a seeded random order before reranking
(``rankwise.bench.robustness.shuffled``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from common import MEASURE, add_output_options, first_stage_run, judged_requests, set_up, write_report

from rankwise.bench.robustness import shuffled
from rankwise.cli.common import cpu_name
from rankwise.eval import evaluate, evaluate_per_query
from rankwise.llm import load_backend
from rankwise.methods import build_method
from rankwise.pipeline import run
from rankwise.plotting import pyplot

NAN = float("nan")

# (label, method, options); each also runs on shuffled input
CELLS = {
    "pairwise": [("pairwise.allpairs rule=prp", "pairwise.allpairs", {"rule": "prp"}),
                 ("pairwise.allpairs rule=probability", "pairwise.allpairs", {"rule": "probability"}),
                 ("pairwise.allpairs rule=bradley-terry", "pairwise.allpairs", {"rule": "bradley-terry"}),
                 ("pairwise.tsp rule=prp", "pairwise.tsp", {"rule": "prp"}),
                 ("pairwise.tsp rule=probability", "pairwise.tsp", {"rule": "probability"}),
                 ("pairwise.allpairs rule=bradley-terry band=3", "pairwise.allpairs", {"rule": "bradley-terry", "band": 3}),
                 ("pairwise.tsp rule=probability band=3", "pairwise.tsp", {"rule": "probability", "band": 3}),
                 ("pairwise.heapsort k=10", "pairwise.heapsort", {"k": 10})],
    "setwise": [("setwise.heapsort c=4 k=10", "setwise.heapsort", {"set_size": 4, "k": 10}),
                ("setwise.tournament c=4 advance=2 T=5", "setwise.tournament", {"set_size": 4, "tournaments": 5}),
                ("listwise.window w=10 step=5", "listwise.window", {"window_size": 10, "step": 5})],
}


def run_cells(args) -> None:
    cache = args.out / f"cache_{args.model}.sqlite" if args.group == "pairwise" else False
    backend = load_backend(args.model, engine="transformers", dtype=args.dtype, cache=cache)
    requests, qrels = judged_requests(args.dataset, args.top_k, args.max_queries)
    bm25 = evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE]
    for label, method, opts in CELLS[args.group]:
        for seed in [None, *range(args.shuffles)]:
            order = "given" if seed is None else f"shuffled (seed {seed})"
            name = f"{args.dataset}_{args.model}_{label.replace(' ', '_')}_{order.replace(' ', '_')}_top{args.top_k}_q{len(requests)}_p{args.passage_tokens}"
            path = args.out / f"{name}.json"
            if path.exists():
                continue
            todo = requests if seed is None else shuffled(requests, args.top_k, seed)
            reranker = build_method(method, backend, max_passage_tokens=args.passage_tokens, **opts)
            load0, cpu0 = os.getloadavg()[0], time.process_time()
            result = run(reranker % args.top_k, todo, query_batch=args.query_batch)
            n, u, ranked = len(todo), result.usage, result.run()
            cell = {"dataset": args.dataset, "model": args.model, "engine": "transformers", "dtype": backend.dtype,
                    "label": label, "input": order, "top_k": args.top_k, "queries": n, "bm25": bm25,
                    "passage_tokens": args.passage_tokens, "query_batch": args.query_batch,
                    "ndcg10": evaluate(ranked, qrels, [MEASURE])[MEASURE],
                    "per_query": {q: v[MEASURE] for q, v in evaluate_per_query(ranked, qrels, [MEASURE]).items()},
                    "prompts": u.calls / n, "model_prompts": (u.calls - u.cache_hits) / n,
                    "computed_tokens": u.computed_tokens / n, "comparisons": u.comparisons / n,
                    "inconsistent": u.inconsistent / n, "exact_paths": u.exact_paths,
                    "heuristic_paths": u.heuristic_paths, "parse_failures": u.parse_failures,
                    "seconds": result.wall_seconds / n, "cpu_seconds": (time.process_time() - cpu0) / n,
                    "load": [round(load0, 2), round(os.getloadavg()[0], 2)], "cpu": cpu_name(),
                    "command": "python benchmarks/aggregation.py " + shlex.join(sys.argv[1:])}
            path.write_text(json.dumps(cell, indent=1))
            print(json.dumps({k: cell[k] for k in ("label", "input", "ndcg10", "prompts", "seconds")}), flush=True)


def report(args) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(args.out.glob("*.json"))]
    labels = [label for group in CELLS.values() for label, _, _ in group]
    cells.sort(key=lambda c: (c["dataset"], c["model"], c["queries"], c["passage_tokens"], labels.index(c["label"]),
                              c["input"]))
    lines = ["# Global orders from comparisons: TSPRank, TourRank, Bradley-Terry (issue 34)", "",
             "Generated by `benchmarks/aggregation.py` from the cells in `benchmarks/out/aggregation/`. Seconds are "
             "wall-clock per query on a 2-core machine (load: 1-minute load average before/after). The pairwise "
             "cells of a table share one output cache: where model prompts/q is 0, the answers came from it "
             "(filled by the table's first, cold cell, which asks every pair in both orders) and s/q is the "
             "aggregation's; `cold s/q` is then estimated as prompts/q times the cold cell's seconds per prompt "
             "(marked ~).", ""]
    for group in _groups(cells):
        first = group[0]
        lines += [f"## {_group_of(first['label'])}: {first['dataset']}, {first['model']} ({first['engine']}, {first['dtype']}), BM25 "
                  f"top-{first['top_k']}, {first['queries']} queries, passages cut to {first['passage_tokens']} tokens",
                  "",
                  f"CPU: {first['cpu']}. Commands: " + "; ".join(sorted({f"`{c['command']}`" for c in group})), "",
                  "| method | input | BM25 nDCG@10 | nDCG@10 | prompts/q | model prompts/q | computed tok/q | "
                  "inconsistent/q | TSP paths exact/heuristic | s/q | cold s/q | CPU s/q | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        cold = [c for c in group if c["model_prompts"] == c["prompts"] > 0]
        per_prompt = cold[0]["seconds"] / cold[0]["prompts"] if cold else None
        for c in group:
            paths = f"{c['exact_paths']}/{c['heuristic_paths']}" if "tsp" in c["label"] else ""
            lines.append(f"| {c['label']} | {c['input']} | {c['bm25']:.4f} | {c['ndcg10']:.4f} | {c['prompts']:.1f} | "
                         f"{c['model_prompts']:.1f} | {c['computed_tokens']:.0f} | {c['inconsistent']:.1f} | {paths} | "
                         f"{c['seconds']:.1f} | {_cold_seconds(c, per_prompt)} | {c['cpu_seconds']:.1f} | "
                         f"{c['load'][0]}/{c['load'][1]} |")
        lines.append("")
    image = plot(cells, args.table.with_suffix(".png"))
    return "\n".join(lines + ([image, ""] if image else []))


def _cold_seconds(cell: dict, per_prompt: float | None) -> str:
    """The cell's own seconds when the model ran every prompt, else an estimate from the table's cold cell."""
    if cell["model_prompts"] == cell["prompts"]:
        return f"{cell['seconds']:.1f}"
    return f"~{cell['prompts'] * per_prompt:.0f}" if per_prompt else ""


def _group_of(label: str) -> str:
    """The CELLS group (pairwise or setwise) a cell's label belongs to."""
    return next(name for name, cells in CELLS.items() if label in [lb for lb, _, _ in cells])


def _groups(cells: list[dict]) -> list[list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for c in cells:
        out.setdefault((c["dataset"], c["model"], c["queries"], c["passage_tokens"], _group_of(c["label"])),
                       []).append(c)
    return list(out.values())


def plot(cells: list[dict], path) -> str:
    """One panel per table: nDCG@10 of each method on the given input and on shuffled input (mean over
    seeds), BM25 as a line. Returns the Markdown image line ("" without matplotlib)."""
    plt = pyplot()
    groups = _groups(cells)
    if plt is None or not groups:
        return ""
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 3.2 * len(groups)), squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        first = group[0]
        labels = list(dict.fromkeys(c["label"] for c in group))
        given = [next((c["ndcg10"] for c in group if c["label"] == lb and c["input"] == "given"), NAN) for lb in labels]
        shuffled_means = []
        for lb in labels:
            values = [c["ndcg10"] for c in group if c["label"] == lb and c["input"] != "given"]
            shuffled_means.append(sum(values) / len(values) if values else NAN)  # no bar
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], given, width=0.4, label="given (BM25 order)")
        ax.bar([x + 0.2 for x in xs], shuffled_means, width=0.4, label="shuffled (mean over seeds)")
        ax.axhline(first["bm25"], color="grey", linestyle=":", label="BM25")
        ax.set_xticks(list(xs), [lb.replace(" ", "\n") for lb in labels], fontsize=6)
        ax.set_ylabel("nDCG@10")
        ax.set_title(f"{first['dataset']}, {first['model']}, BM25 top-{first['top_k']}, {first['queries']} queries",
                     fontsize=9)
        ax.set_ylim(0, 1.35 * max(v for v in [first["bm25"], *given, *shuffled_means] if v == v))
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![nDCG@10 given and shuffled](benchmarks/results/{path.name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="dl19")
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--max-queries", type=int, default=5)
    parser.add_argument("--passage-tokens", type=int, default=64)
    parser.add_argument("--query-batch", type=int, default=1,
                        help="queries reranked at once (the same step of each in one engine call)")
    parser.add_argument("--shuffles", type=int, default=2, help="runs on shuffled input, seeds 0, 1, ...")
    parser.add_argument("--group", choices=sorted(CELLS), help="run these cells (none: only write the report)")
    add_output_options(parser, "aggregation")
    args = parser.parse_args()
    set_up(args.threads, args.out)
    if args.group:
        run_cells(args)
    write_report(args.table, lambda: report(args))


if __name__ == "__main__":
    main()
