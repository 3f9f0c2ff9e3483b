"""The best rankwise pipeline on strong first stages (SPLADE++, TAS-B, ada2 top-100 runs the DL folders ship).

    python benchmarks/strong_pipelines.py --datasets dl19 dl20
    python benchmarks/strong_pipelines.py --datasets dl19 dl20 --llm qwen2.5-1.5b --max-queries 20

Each pipeline runs over every judged query (or the first --max-queries) through rankwise.compose, with the
output cache off for clean timings. nDCG@10 of each is compared with SPLADE++ alone (the strongest single
run) by the paired randomisation test. --llm adds the pipeline whose last stage mixes that model's pointwise
yes/no scores with the fused first stage (``Fuse(Identity(), Rerank(...), method="interpolate") % 20``).
One JSON cell per dataset and pipeline under --out (a finished cell is skipped); the table is rewritten
from every cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time

from common import MEASURE, add_output_options, set_up, write_report

from rankwise.cli.common import cpu_name
from rankwise.pipeline import Backends, FirstStage, Fuse, Identity, Rerank, Stage
from rankwise.data import load_dataset
from rankwise.eval import evaluate_per_query
from rankwise.eval.significance import randomisation_test
from rankwise.types import Query

SPLADE, TASB, ADA2 = "splade_p_p_ensemble_distil", "d_bert_kd_tasb", "open_ai_ada2"
BASELINE = "SPLADE++"


def pipelines(llm: str | None, e2rank_weight: float, llm_weight: float, llm_depth: int) -> dict[str, Stage]:
    """The pipelines compared, by label: each run alone, their fusions, and the rerankers over the fusion."""
    splade, tasb, ada2 = (FirstStage(name) % 100 for name in (SPLADE, TASB, ADA2))
    fused = splade | tasb | ada2
    e2rank = Rerank("embedding.e2rank", model="minilm-l6")
    out: dict[str, Stage] = {
        BASELINE: splade, "TAS-B": tasb, "ada2": ada2,
        "SPLADE++ | TAS-B (RRF)": splade | tasb,
        "SPLADE++ | TAS-B | ada2 (RRF)": fused,
        "SPLADE++ >> E2Rank": splade >> e2rank,
        f"RRF3 >> Fuse(Identity, E2Rank, w={e2rank_weight})":
            fused >> Fuse(Identity(), e2rank, method="interpolate", weights=[e2rank_weight, 1 - e2rank_weight]),
    }
    if llm:
        judge = Rerank("pointwise.yes_no", model=llm, max_passage_tokens=128)
        out[f"RRF3 >> Fuse(Identity, {llm} yes/no, w={llm_weight}) % {llm_depth}"] = (
            fused >> Fuse(Identity(), judge, method="interpolate", weights=[llm_weight, 1 - llm_weight]) % llm_depth)
    return out


def run_cell(label: str, pipeline: Stage, dataset: str, max_queries: int | None, backends: Backends) -> dict:
    ds = load_dataset(dataset)
    queries = [Query(qid, text) for qid, text in ds.judged_queries().items()][:max_queries]
    started = time.perf_counter()
    result = pipeline.run(queries=queries, dataset=ds, backends=backends)
    seconds = time.perf_counter() - started
    run = result.run()
    per_query = evaluate_per_query(run, {q.qid: ds.qrels[q.qid] for q in queries}, [MEASURE])
    return {"dataset": dataset, "label": label, "pipeline": str(pipeline), "queries": len(queries),
            "per_query": {qid: v[MEASURE] for qid, v in per_query.items()},
            "ndcg10": sum(v[MEASURE] for v in per_query.values()) / len(per_query),
            "seconds_per_query": seconds / len(queries), "calls_per_query": result.usage.calls / len(queries),
            "prompt_tokens_per_query": result.usage.prompt_tokens / len(queries), "cpu": cpu_name()}


def report(cells: list[dict], command: str) -> str:
    lines = ["# The best rankwise pipeline on strong first stages\n",
             f"CPU: {cells[0]['cpu']}. Command: `{command}`\n",
             "p: paired randomisation test (10,000 sign flips) against SPLADE++ alone on the same queries.\n"]
    for dataset in dict.fromkeys(c["dataset"] for c in cells):
        rows = [c for c in cells if c["dataset"] == dataset]
        by_queries: dict[int, list[dict]] = {}
        for c in rows:
            by_queries.setdefault(c["queries"], []).append(c)
        for n, group in by_queries.items():
            base = next((c for c in group if c["label"] == BASELINE), None)
            lines += [f"\n## {dataset}, {n} judged queries\n",
                      "| pipeline | nDCG@10 | Δ vs SPLADE++ | p | model calls/q | prompt tok/q | s/q |",
                      "|---|---|---|---|---|---|---|"]
            for c in group:
                delta, p = "", ""
                if base is not None and c is not base:
                    qids = list(base["per_query"])
                    a = [base["per_query"][q] for q in qids]
                    b = [c["per_query"][q] for q in qids]
                    delta = f"{c['ndcg10'] - base['ndcg10']:+.4f}"
                    p = f"{randomisation_test(a, b):.3f}"
                lines.append(f"| {c['label'].replace('|', chr(92) + '|')} | {c['ndcg10']:.4f} | {delta} | {p} | {c['calls_per_query']:.0f} "
                             f"| {c['prompt_tokens_per_query']:.0f} | {c['seconds_per_query']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["dl19", "dl20"])
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--llm", default=None, help="add pipelines ending in this model's pointwise yes/no")
    parser.add_argument("--llm-depth", type=int, default=20)
    parser.add_argument("--e2rank-weight", type=float, default=0.8, help="weight of the fused first stage")
    parser.add_argument("--llm-weight", type=float, default=0.5, help="weight of the fused first stage")
    add_output_options(parser, "strong_pipelines")
    args = parser.parse_args()
    set_up(args.threads, args.out)
    backends = Backends(cache=False)
    chosen = pipelines(args.llm, args.e2rank_weight, args.llm_weight, args.llm_depth)
    for dataset in args.datasets:
        for label, pipeline in chosen.items():
            key = hashlib.sha256(str(pipeline).encode()).hexdigest()[:12]
            path = args.out / f"{dataset}__q{args.max_queries or 'all'}__{key}.json"
            if path.exists():
                continue
            print(f"{dataset}: {label}", file=sys.stderr, flush=True)
            path.write_text(json.dumps(run_cell(label, pipeline, dataset, args.max_queries, backends), indent=1))
    cells = [json.loads(p.read_text()) for p in sorted(args.out.glob("*.json"))]
    order = {label: i for i, label in enumerate(chosen)}
    cells.sort(key=lambda c: (args.datasets.index(c["dataset"]) if c["dataset"] in args.datasets else 99,
                              c["queries"], order.get(c["label"], 99)))
    command = "python benchmarks/strong_pipelines.py " + shlex.join(sys.argv[1:])
    write_report(args.table, lambda: report(cells, command))


if __name__ == "__main__":
    main()
