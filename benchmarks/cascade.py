"""A cascade against its best single stage, measured in one process, query by query in turns.

    python benchmarks/cascade.py --datasets dl19 dl20 --max-queries 20 \
        --first-method embedding.e2rank --first-model minilm-l6 \
        --method pointwise.yes_no --model qwen2.5-0.5b --top-k 100 --k 30 --passage-tokens 128

Cascade: BM25 top-``top_k`` >> Rerank(first_method) % top_k >> Rerank(method) % k; with ``--interpolate W``
the last stage mixes the cheap stage's scores (weight W) with the expensive ones (min-max normalised):
``>> Fuse(Identity(), Rerank(method), method="interpolate", weights=[W, 1 - W]) % k``.
Single: BM25 top-``top_k`` >> Rerank(method) % top_k (the expensive stage over every candidate).
Cheap alone: the cheap stage over every candidate. With ``--interpolate``, "interpolated over all" is the
interpolated stage over every candidate: the fusion of the cheap-alone and single rankings (pointwise
scores do not depend on the input order, so this equals running it), its cost theirs summed.
Both run through rankwise.compose on one set of backends (each model loaded once, the expensive model
shared by both), with the output cache off, so costs are cold costs; each first runs --warmup queries
untimed. The two take turns query by query, so load on the shared machine falls on both alike. One JSON
cell per dataset and settings under --out (a finished cell is skipped on re-run); the Markdown report
(--table) is rewritten from every cell.
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
from rankwise.pipeline import Backends, Fuse, Identity, Rerank, Stage
from rankwise.eval import evaluate
from rankwise.fusion import fuse_rankings
from rankwise.pipeline import PipelineResult
from rankwise.types import Request


def _pipelines(args) -> dict[str, Stage]:
    options = {"max_passage_tokens": args.passage_tokens} if args.passage_tokens else {}
    first_options = {"m": args.first_m} if args.first_m and args.first_method == "embedding.e2rank" else {}
    expensive = Rerank(args.method, model=args.model, engine=args.engine, **options)
    cheap = Rerank(args.first_method, model=args.first_model, **first_options) % args.top_k
    head = expensive if args.interpolate is None else \
        Fuse(Identity(), expensive, method="interpolate", weights=[args.interpolate, 1 - args.interpolate])
    return {"cascade": cheap >> head % args.k, "single": expensive % args.top_k, "cheap alone": cheap}


def _interpolated_over_all(measured: dict[str, dict], weight: float) -> PipelineResult:
    """The interpolated stage over every candidate, from the cheap-alone and single rankings of each query."""
    cheap, single = measured["cheap alone"]["result"], measured["single"]["result"]
    out = PipelineResult(pipeline=f"Fuse(cheap alone, single, method='interpolate', weights={(weight, 1 - weight)})")
    out.rankings = {qid: fuse_rankings([cheap.rankings[qid], single.rankings[qid]], "interpolate",
                                       weights=[weight, 1 - weight]) for qid in single.rankings}
    out.wall_seconds = cheap.wall_seconds + single.wall_seconds
    out.usage.add(single.usage)
    out.usage.add(cheap.usage)
    measured["interpolated over all"] = {"stages": {}, "result": out, "cpu_seconds":
                                         measured["single"]["cpu_seconds"] + measured["cheap alone"]["cpu_seconds"]}
    return out


def _in_turns(pipelines: dict[str, Stage], requests: list[Request], backends: dict[str, Backends]) -> dict[str, dict]:
    """Run every pipeline on each query in turn; their rankings, CPU seconds and merged stage reports."""
    out = {name: {"result": PipelineResult(pipeline=str(p)), "cpu_seconds": 0.0, "stages": {}}
           for name, p in pipelines.items()}
    for request in requests:
        for name, pipeline in pipelines.items():
            cpu = time.process_time()
            one = pipeline.run([request], backends=backends[name])
            acc = out[name]
            acc["cpu_seconds"] += time.process_time() - cpu
            acc["result"].rankings.update(one.rankings)
            acc["result"].usage.add(one.usage)
            acc["result"].wall_seconds += one.wall_seconds
            for stage in one.stages:
                mine = acc["stages"].setdefault(stage.path, {"stage": stage.stage, "seconds": 0.0, "calls": 0,
                                                             "load_seconds": 0.0, "model": stage.usage.model})
                mine["seconds"] += stage.wall_seconds
                mine["calls"] += stage.usage.calls
                mine["load_seconds"] += stage.load_seconds
    return out


def run(args) -> None:
    pipelines = _pipelines(args)
    shared = Backends(cache=False)
    # the cheap stage alone gets its own backends: the embedding backend keeps vectors, and sharing them
    # with the cascade would make one of the two look free
    backends = {name: Backends(cache=False) if name == "cheap alone" else shared for name in pipelines}
    for dataset in args.datasets:
        more = None if args.max_queries is None else args.skip_queries + args.max_queries + args.warmup
        everything, qrels = judged_requests(dataset, args.top_k, more)
        everything = everything[args.skip_queries:]
        # warm-up queries come after the measured ones: the embedding backend keeps vectors, so warming
        # up on a measured query would make its first stage look free
        requests, warmup = (everything[: args.max_queries], everything[args.max_queries:]) \
            if args.max_queries is not None else (everything, everything[: args.warmup])
        qrels = {r.query.qid: qrels[r.query.qid] for r in requests}
        n = len(requests)
        mix = "" if args.interpolate is None else f"_w{args.interpolate:g}"
        skip = f"_s{args.skip_queries}" if args.skip_queries else ""
        path = args.out / (f"cascade_{dataset}_{args.first_method}-{args.first_model}_{args.method}-{args.model}"
                           f"_top{args.top_k}_k{args.k}{mix}_q{n}{skip}_p{args.passage_tokens}_t{args.threads}.json")
        if path.exists():
            continue
        for name, pipeline in pipelines.items():  # untimed: first forward passes pay one-off costs (allocation)
            for request in warmup:
                pipeline.run([request], backends=backends[name])
        load0 = os.getloadavg()[0]
        measured = _in_turns(pipelines, requests, backends)
        if args.interpolate is not None:
            _interpolated_over_all(measured, args.interpolate)
        cell = {"dataset": dataset, "queries": n, "skip_queries": args.skip_queries, "top_k": args.top_k, "k": args.k,
                "passage_tokens": args.passage_tokens, "threads": args.threads, "cpu": cpu_name(),
                "interpolate": args.interpolate,
                "command": "python benchmarks/cascade.py " + shlex.join(sys.argv[1:]),
                "bm25": evaluate(first_stage_run(requests), qrels, [MEASURE])[MEASURE],
                "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        for name, m in measured.items():
            result = m["result"]
            cell[name] = {"pipeline": result.pipeline, "ndcg10": evaluate(result.run(), qrels, [MEASURE])[MEASURE],
                          "seconds": result.wall_seconds / n, "cpu_seconds": m["cpu_seconds"] / n,
                          "calls": result.usage.calls / n, "computed_tokens": result.usage.computed_tokens / n,
                          "stages": [{**s, "seconds": s["seconds"] / n, "calls": s["calls"] / n}
                                     for s in m["stages"].values()]}
        cell["seconds_ratio"] = cell["cascade"]["seconds"] / cell["single"]["seconds"]
        path.write_text(json.dumps(cell, indent=1))
        print(json.dumps({"dataset": dataset, "bm25": cell["bm25"], "seconds_ratio": cell["seconds_ratio"],
                          **{k: {x: cell[k][x] for x in ("ndcg10", "seconds")} for k in measured}}), flush=True)


def report(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# A cascade against its best single stage\n",
             "Generated by `benchmarks/cascade.py` from the cells in `benchmarks/out/cascade/`. Both pipelines "
             "run in one process on the same backends (each model loaded once; the cheap stage alone on its own, "
             "so that neither reuses the other's embeddings), output cache off, after an "
             "untimed warm-up query, taking turns query by query. s/q is wall-clock per query (model loading "
             "excluded), on a machine shared with other jobs (load: the 1-minute load average before/after); CPU s/q is this process's CPU time. "
             "Ratio: cascade seconds / single-stage seconds.\n"]
    for c in cells:
        sample = (f"judged queries {c['skip_queries'] + 1}-{c['skip_queries'] + c['queries']}"
                  if c.get("skip_queries") else f"{c['queries']} queries")
        lines += [f"\n## {c['dataset']}: BM25 top-{c['top_k']}, {sample}, passages cut to "
                  f"{c['passage_tokens']} tokens\n",
                  f"CPU: {c['cpu']}. Command: `{c['command']}`\n",
                  "| run | pipeline | nDCG@10 | prompts/q | computed tok/q | s/q | CPU s/q |",
                  "|---|---|---|---|---|---|---|",
                  f"| BM25 | first stage | {c['bm25']:.4f} | 0 | 0 | 0 | 0 |"]
        for name in ("cascade", "single", "cheap alone", "interpolated over all"):
            if name not in c:  # cells written before the cheap stage ran alone
                continue
            r = c[name]
            lines.append(f"| {name} | `{r['pipeline']}` | {r['ndcg10']:.4f} | {r['calls']:.1f} | "
                         f"{r['computed_tokens']:.0f} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} |")
        singles = {n: c[n] for n in ("single", "cheap alone", "interpolated over all") if n in c}
        best = max(singles, key=lambda n: singles[n]["ndcg10"])
        lines += ["", f"Cascade / single: nDCG@10 {c['cascade']['ndcg10'] - c['single']['ndcg10']:+.4f}, "
                      f"seconds x{c['seconds_ratio']:.2f}. Best run over all {c['top_k']}: {best} "
                      f"({singles[best]['ndcg10']:.4f}); cascade - best {c['cascade']['ndcg10'] - singles[best]['ndcg10']:+.4f}, "
                      f"seconds x{c['cascade']['seconds'] / singles[best]['seconds']:.2f}. "
                      f"Load {c['load'][0]}/{c['load'][1]}.", "",
                  "| run | stage | prompts/q | s/q | model load s |", "|---|---|---|---|---|"]
        for name in ("cascade", "single"):
            for s in c[name]["stages"]:
                lines.append(f"| {name} | `{s['stage']}` | {s['calls']:.1f} | {s['seconds']:.2f} | "
                             f"{s['load_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--skip-queries", type=int, default=0,
                    help="measure the judged queries after the first N (a second sample of the same settings)")
    ap.add_argument("--top-k", type=int, default=100, help="BM25 candidates per query (all reranked by stage 1)")
    ap.add_argument("--k", type=int, default=30, help="head the expensive stage reranks in the cascade")
    ap.add_argument("--first-method", default="embedding.e2rank", help="the cheap stage's method")
    ap.add_argument("--first-model", default="minilm-l6")
    ap.add_argument("--first-m", type=int, default=None, help="embedding.e2rank: top-m in the listwise prompt")
    ap.add_argument("--method", default="pointwise.yes_no", help="the expensive stage's method")
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--interpolate", type=float, default=None,
                    help="weight W of the cheap stage's scores in the cascade's last stage (0..1)")
    ap.add_argument("--passage-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1, help="queries each pipeline runs untimed first")
    add_output_options(ap, "cascade")
    args = ap.parse_args()
    if args.interpolate is not None and not 0 <= args.interpolate <= 1:
        ap.error(f"--interpolate takes a weight between 0 and 1, got {args.interpolate}")
    set_up(args.threads, args.out)
    run(args)
    write_report(args.table, lambda: report(args.out))


if __name__ == "__main__":
    main()
