"""Listwise (sliding windows, FIRST, full list, InsertRank, TDPart) and groupwise (GroupRank) methods on TREC
DL BM25 candidates: effectiveness and cost, order robustness, and FIRST against generated windows.

    python benchmarks/listwise_groupwise.py --models qwen2.5-0.5b qwen2.5-1.5b --datasets dl19 dl20 \
        --top-k 20 --max-queries 10 --shuffles 3 --first-vs-generated

One JSON per cell (dataset, model, method, settings, shuffle) under --out; a finished cell is skipped on
re-run, so long runs resume. ``--shuffles N`` also runs every method on N seeded shuffles of each query's
candidates (order robustness: mean and standard deviation of nDCG@10). ``--first-vs-generated`` runs
``listwise.window`` with the alphabetic identifiers FIRST reads, so both rank the same windows with the
same prompt: the table gives the speed ratio and the nDCG@10 difference. The Markdown report (--table)
is rebuilt from every stored cell. The output cache is off: costs are cold costs. --threads (default 1)
sets torch's threads (2 threads on 2 shared cores spin-wait for each other).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from common import MEASURE, add_output_options, first_stage_run, judged_requests, set_up, write_report

from rankwise.bench.robustness import shuffled
from rankwise.cli.common import cpu_name
from rankwise.errors import InputError
from rankwise.eval import evaluate
from rankwise.llm import load_backend
from rankwise.methods import build_method
from rankwise.pipeline import run as run_stage
from rankwise.types import Request

METHODS = ["listwise.window", "listwise.first", "listwise.full", "listwise.insertrank", "listwise.tdpart",
           "groupwise.generate", "groupwise.logits"]
GENERATED_ON_LETTERS = "listwise.window[alpha]"  # the generated twin of FIRST: same windows, same prompt


def _context_length(backend, fallback: int = 8192) -> int:
    """The model's context in tokens (transformers config), for listwise.full."""
    config = getattr(getattr(backend, "model", None), "config", None)
    return int(getattr(config, "max_position_embeddings", None) or fallback)


def _options(method: str, args, backend) -> tuple[str, dict]:
    """The registered method and its options for a benchmark method name."""
    opts = {"max_passage_tokens": args.passage_tokens}
    if method == GENERATED_ON_LETTERS:
        return "listwise.window", opts | {"labels": "alpha"}
    if method == "listwise.full":
        opts["max_context"] = _context_length(backend)
    return method, opts


def run(args) -> None:
    for model in args.models:
        backend = load_backend(model, engine=args.engine, dtype=args.dtype)
        for dataset in args.datasets:
            requests, qrels = judged_requests(dataset, args.top_k, args.max_queries)
            methods = list(args.methods) + ([GENERATED_ON_LETTERS] if args.first_vs_generated else [])
            for shuffle in [None, *range(args.shuffles)]:
                batch = requests if shuffle is None else shuffled(requests, args.top_k, shuffle)
                for method in methods:
                    if shuffle is not None and method == GENERATED_ON_LETTERS:
                        continue
                    _cell(args, backend, model, dataset, method, batch, qrels, shuffle)


def _cell(args, backend, model: str, dataset: str, method: str, requests: list[Request], qrels: dict,
          shuffle: int | None) -> None:
    n = len(requests)
    tag = "orig" if shuffle is None else f"shuffle{shuffle}"
    path = args.out / (f"{dataset}_{model}_{backend.dtype}_{method}_top{args.top_k}_q{n}_p{args.passage_tokens}"
                       f"_t{args.threads}_{tag}.json")
    if path.exists():
        return
    name, opts = _options(method, args, backend)
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    try:
        result = run_stage(build_method(name, backend, **opts) % args.top_k, requests)
    except InputError as err:  # e.g. the full list does not fit the context: say so, go on
        print(f"skipped {dataset} {model} {method}: {err}", flush=True)
        return
    u = result.usage
    cell = {"dataset": dataset, "model": model, "method": method, "shuffle": shuffle, "top_k": args.top_k,
            "queries": n, "passage_tokens": args.passage_tokens, "threads": args.threads,
            "engine": backend.engine, "dtype": backend.dtype, "cpu": cpu_name(),
            "command": "python benchmarks/listwise_groupwise.py " + shlex.join(sys.argv[1:]),
            "bm25": evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE] if shuffle is None else None,
            "ndcg10": evaluate(result.run(), qrels, [MEASURE])[MEASURE],
            "calls": u.calls / n, "prompt_tokens": u.prompt_tokens / n, "computed_tokens": u.computed_tokens / n,
            "completion_tokens": u.completion_tokens / n, "parse_failures": u.parse_failures,
            "seconds": result.wall_seconds / n, "cpu_seconds": (time.process_time() - cpu0) / n,
            "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    path.write_text(json.dumps(cell, indent=1))
    print(json.dumps({k: cell[k] for k in ("dataset", "model", "method", "shuffle", "ndcg10", "calls", "seconds")}),
          flush=True)


def _setting(c: dict) -> tuple:
    return c["dataset"], c["model"], c["dtype"], c["top_k"], c["queries"], c["passage_tokens"]


def report(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# Listwise and groupwise reranking: effectiveness and cost\n",
             "Generated by `benchmarks/listwise_groupwise.py` from the cells in `benchmarks/out/listwise_groupwise/`; "
             "the command of each block is given with it. Seconds are wall-clock per query on a 2-core machine that "
             "may be shared (load: the 1-minute load average before/after the cell): compare seconds within one "
             "block only. Calls are prompts sent to the model per query.\n"]
    orig = [c for c in cells if c["shuffle"] is None]
    for command in dict.fromkeys(c["command"] for c in orig):
        block = [c for c in orig if c["command"] == command]
        c0 = block[0]
        lines += [f"\n## BM25 top-{c0['top_k']}, {c0['queries']} queries, passages cut to {c0['passage_tokens']} "
                  f"tokens ({c0['engine']})\n",
                  f"CPU: {c0['cpu']}. Command: `{command}`\n",
                  "| dataset | model | dtype | method | BM25 nDCG@10 | nDCG@10 | calls/q | prompt tok/q | computed tok/q "
                  "| completion tok/q | parse failures | s/q | CPU s/q | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in block:
            lines.append(f"| {c['dataset']} | {c['model']} | {c['dtype']} | {c['method']} | {c['bm25']:.4f} | "
                         f"{c['ndcg10']:.4f} | {c['calls']:.1f} | {c['prompt_tokens']:.0f} | "
                         f"{c['computed_tokens']:.0f} | {c['completion_tokens']:.0f} | {c['parse_failures']} | "
                         f"{c['seconds']:.1f} | {c['cpu_seconds']:.1f} | {c['load'][0]}/{c['load'][1]} |")
    lines += _robustness(cells) + _first_vs_generated(orig)
    return "\n".join(lines) + "\n"


def _robustness(cells: list[dict]) -> list[str]:
    shuffled = [c for c in cells if c["shuffle"] is not None]
    if not shuffled:
        return []
    lines = ["\n## Order robustness: nDCG@10 over seeded shuffles of each query's candidates\n",
             "| dataset | model | top-k | queries | method | input order | shuffles | mean | std |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for c in shuffled:
        groups.setdefault(_setting(c) + (c["method"],), []).append(c)
    originals = {_setting(c) + (c["method"],): c for c in cells if c["shuffle"] is None}
    for key, group in groups.items():
        values = [c["ndcg10"] for c in group]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        base = originals.get(key)
        lines.append(f"| {key[0]} | {key[1]} | {key[3]} | {key[4]} | {key[6]} | "
                     f"{base['ndcg10']:.4f} | {len(values)} | {statistics.mean(values):.4f} | {std:.4f} |"
                     if base else f"| {key[0]} | {key[1]} | {key[3]} | {key[4]} | {key[6]} | - | {len(values)} | "
                     f"{statistics.mean(values):.4f} | {std:.4f} |")
    return lines


def _first_vs_generated(orig: list[dict]) -> list[str]:
    by = {_setting(c) + (c["method"],): c for c in orig}
    pairs = [(by[k], by[k[:-1] + ("listwise.first",)]) for k in by
             if k[-1] == GENERATED_ON_LETTERS and k[:-1] + ("listwise.first",) in by]
    if not pairs:
        return []
    lines = ["\n## FIRST against generated permutations on the same windows (identifiers [A]..[T], same prompt)\n",
             "| dataset | model | top-k | queries | generated nDCG@10 | FIRST nDCG@10 | FIRST - generated | generated s/q "
             "| FIRST s/q | speed ratio (generated / FIRST) | time saved | completion tok/q (generated) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for gen, first in pairs:
        ratio = gen["seconds"] / first["seconds"] if first["seconds"] else float("nan")
        lines.append(f"| {gen['dataset']} | {gen['model']} | {gen['top_k']} | {gen['queries']} | {gen['ndcg10']:.4f} | "
                     f"{first['ndcg10']:.4f} | {first['ndcg10'] - gen['ndcg10']:+.4f} | {gen['seconds']:.1f} | "
                     f"{first['seconds']:.1f} | {ratio:.2f}x | {1 - 1 / ratio:.0%} | {gen['completion_tokens']:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-0.5b"])
    ap.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--top-k", type=int, default=20, help="BM25 candidates reranked per query")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--passage-tokens", type=int, default=128)
    ap.add_argument("--shuffles", type=int, default=0,
                    help="also run every method on N seeded shuffles of the candidates (order robustness)")
    ap.add_argument("--first-vs-generated", action="store_true",
                    help="also run generated windows on FIRST's alphabetic identifiers (same windows, same prompt)")
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--dtype", default="auto")
    add_output_options(ap, "listwise_groupwise")
    args = ap.parse_args()
    set_up(args.threads, args.out)
    run(args)
    write_report(args.table, lambda: report(args.out))


if __name__ == "__main__":
    main()
