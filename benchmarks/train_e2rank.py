"""E2Rank training figures: untrained against trained bi-encoders as rerankers of BM25 candidates.

    rankwise train examples/train-e2rank-dl20.yaml --output runs/e2rank-dl20        # both stages, <= 18 min
    python benchmarks/train_e2rank.py --dataset dl19 \
        --model untrained=minilm-l6 --model contrastive=runs/e2rank-dl20/contrastive --model both=runs/e2rank-dl20

For each model: nDCG@10 of embedding.cosine, embedding.e2rank at w=0.5 (the shipped default) and at w=0 (the
pure pseudo query, the paper's method), each through ``load_reranker`` + ``run`` over the BM25 top-100 of
every judged query; the BM25 row is the first stage itself. With --dense, each model also retrieves the top
100 of every judged query from the whole corpus (``DenseRetriever``, what ``rankwise retrieve --retriever
dense`` runs): nDCG@10 and R@100 against BM25's. One JSON per cell under --out (a finished cell is skipped on
re-run); the report (--table) is rebuilt from every stored cell, keeping its hand-written notes.
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
from rankwise.eval import evaluate, evaluate_per_query, randomisation_test
from rankwise.pipeline import load_reranker, run
from rankwise.types import Request

RECALL = "R@100"
DENSE = "dense first stage"
METHODS = {  # name in the report -> (method, options)
    "cosine": ("embedding.cosine", {}),
    "e2rank w=0.5": ("embedding.e2rank", {"m": 5, "query_weight": 0.5}),
    "e2rank w=0": ("embedding.e2rank", {"m": 5, "query_weight": 0.0}),
}


def judged(dataset: str, top_k: int, out: Path) -> tuple[list[Request], dict]:
    """BM25 top-``top_k`` of every judged query (SciFact: rankwise's BM25 over its corpus, stored once)."""
    ds = load_dataset(dataset)
    if "bm25" in ds.candidates or "bm25" in ds.runs:
        requests = ds.requests("bm25", top_k=top_k)
    else:
        path = out / f"{dataset}.bm25.top{top_k}.trec"
        if not path.exists():
            from rankwise.retrieve.bm25 import BM25Retriever

            write_run(BM25Retriever(show_progress=False).index(ds.docs).retrieve(ds.judged_queries(), top_k), path,
                      tag="bm25")
        requests = requests_from_run(read_run(path), ds.queries, ds.docs, top_k)
    requests = [r for r in requests if r.query.qid in ds.qrels]
    return requests, {r.query.qid: ds.qrels[r.query.qid] for r in requests}


def measure(args, label: str, model: str, requests: list[Request], qrels: dict) -> None:
    """The cells of one model (a backend shared by its methods, so each passage is embedded once)."""
    from rankwise.llm import load_backend_for

    backend = None
    for name, (method, options) in METHODS.items():
        path = args.out / f"{args.dataset}_{label}_{name.replace(' ', '_')}_top{args.top_k}.json"
        if path.exists():
            continue
        backend = backend or load_backend_for("embedding", model)
        started = time.perf_counter()
        result = run(load_reranker(method, model, backend=backend, **options) % args.top_k, requests)
        _store(path, args, label, model, name, result.run(), qrels, started)


def dense(args, label: str, model: str, qrels: dict) -> None:
    """The model as a dense first stage: the top 100 of every judged query from the whole corpus."""
    from rankwise.retrieve.dense import DenseRetriever

    path = args.out / f"{args.dataset}_{label}_dense_top100.json"
    if path.exists():
        return
    ds = load_dataset(args.dataset)
    started = time.perf_counter()
    retriever = DenseRetriever(model).index(ds.docs)
    _store(path, args, label, model, DENSE, retriever.retrieve({q: ds.queries[q] for q in qrels}, 100), qrels,
           started)


def _store(path: Path, args, label: str, model: str, method: str, run_: dict, qrels: dict, started: float) -> None:
    """One cell: nDCG@10 (mean and per query) and R@100 of ``run_``, the time, the CPU, the training."""
    means = evaluate(run_, qrels, [MEASURE, RECALL])
    cell = {"dataset": args.dataset, "label": label, "model": model, "method": method, "queries": len(qrels),
            "top_k": args.top_k, "ndcg10": means[MEASURE], "recall100": means[RECALL],
            "per_query": {q: m[MEASURE] for q, m in evaluate_per_query(run_, qrels, [MEASURE]).items()},
            "seconds": round(time.perf_counter() - started, 1), "cpu": cpu_name(),
            "trained": _training(model), "load": round(os.getloadavg()[0], 2),
            "command": f"python benchmarks/train_e2rank.py {shlex.join(sys.argv[1:])}"}
    path.write_text(json.dumps(cell, indent=1))
    print(json.dumps({k: cell[k] for k in ("label", "method", "ndcg10", "recall100", "seconds")}), flush=True)


def _training(model: str) -> dict | None:
    """What the training results file says about a trained model directory (None: not trained here)."""
    for path in (Path(model) / "train-results.json", Path(model) / "stage-results.json"):
        if path.is_file():
            r = json.loads(path.read_text())
            stages = r.get("stages", [r])
            return {"stages": [s["stage"] for s in stages], "steps": [s["steps"] for s in stages],
                    "minutes": [round(s["seconds"] / 60, 1) for s in stages]}
    return None


def report(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    intro = ("Generated by `benchmarks/train_e2rank.py` from the cells in `benchmarks/out/train_e2rank/`: nDCG@10 "
             "reranking the BM25 top-100 of every judged query, each method through `load_reranker` + `run`. "
             "w is embedding.e2rank's `query_weight` (0: the pseudo query alone), m=5. The last column is the "
             "paper's claim on our model: the pure pseudo query (w=0) against plain cosine of the same model, "
             "with the p-value of a paired randomisation test over the queries.\n")
    lines = ["# Training bi-encoders as listwise rerankers (E2Rank)\n", intro]
    for dataset in dict.fromkeys(c["dataset"] for c in cells):
        rows = [c for c in cells if c["dataset"] == dataset and c["method"] != DENSE]
        c0 = rows[0]
        bm25 = _bm25(dataset, c0["top_k"], out)
        lines += [f"\n## {dataset} (BM25 top-{c0['top_k']}, {c0['queries']} queries; BM25 itself: {bm25[MEASURE]:.4f})\n",
                  f"CPU: {c0['cpu']}.\n",
                  "| model | training (stages, steps, minutes) | " + " | ".join(METHODS) +
                  " | w=0 minus cosine (p) | seconds (3 methods) |",
                  "|---|---|" + "---|" * (len(METHODS) + 2)]
        for label, mine in _by_label(rows).items():
            scores = " | ".join(f"{mine[m]['ndcg10']:.4f}" if m in mine else "-" for m in METHODS)
            claim = (_difference(mine["cosine"], mine["e2rank w=0"])
                     if "cosine" in mine and "e2rank w=0" in mine else "-")
            lines.append(f"| {_name(label, mine)} | {_trained(mine)} | {scores} | {claim} | "
                         f"{sum(c['seconds'] for c in mine.values()):.0f} |")
        lines.append("\nCommands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(c["command"] for c in rows)))
        lines += _dense_table([c for c in cells if c["dataset"] == dataset and c["method"] == DENSE], bm25)
    return "\n".join(lines) + "\n"


def _dense_table(rows: list[dict], bm25: dict) -> list[str]:
    """Each model as a first stage over the whole corpus, against BM25 (top 100 of every judged query)."""
    if not rows:
        return []
    first = rows[0]
    lines = [(f"\n### {first['dataset']}: the models as a dense first stage (top 100 from the whole corpus, "
             f"{first['queries']} queries)\n"), f"CPU: {first['cpu']}.\n",
             "| first stage | training | nDCG@10 | R@100 | nDCG@10 minus the untrained model's (p) | seconds (index + search) |",
             "|---|---|---|---|---|---|",
             f"| BM25 (the candidates above) | - | {bm25[MEASURE]:.4f} | {bm25[RECALL]:.4f} | - | - |"]
    by_label = _by_label(rows)
    untrained = next((m[DENSE] for m in by_label.values() if m[DENSE]["trained"] is None), None)
    for label, mine in by_label.items():
        c = mine[DENSE]
        against = _difference(untrained, c) if untrained is not None and c is not untrained else "-"
        lines.append(f"| {_name(label, mine)} | {_trained(mine)} | {c['ndcg10']:.4f} | {c['recall100']:.4f} | "
                     f"{against} | {c['seconds']:.0f} |")
    lines.append("\nCommands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(c["command"] for c in rows)))
    return lines


def _by_label(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """label -> method -> cell, untrained first, then by stages and steps trained."""
    out: dict[str, dict[str, dict]] = {}
    for c in sorted(rows, key=_order):
        out.setdefault(c["label"], {})[c["method"]] = c
    return out


def _name(label: str, mine: dict) -> str:
    return f"{label} (`{next(iter(mine.values()))['model']}`)"


def _trained(mine: dict) -> str:
    t = next(iter(mine.values()))["trained"]
    if not t:
        return "untrained"
    return ", ".join(f"{s} {n} steps {m} min" for s, n, m in zip(t["stages"], t["steps"], t["minutes"]))


def _difference(a: dict, b: dict) -> str:
    """b's nDCG@10 minus a's, with the paired randomisation test's p over the queries both have."""
    qids = sorted(set(a["per_query"]) & set(b["per_query"]))
    p = randomisation_test([a["per_query"][q] for q in qids], [b["per_query"][q] for q in qids])
    return f"{b['ndcg10'] - a['ndcg10']:+.4f} ({'<0.001' if p < 0.001 else f'{p:.3f}'})"


def _order(cell: dict) -> tuple[int, int]:
    """Untrained first, then by stages and steps trained."""
    t = cell["trained"]
    return (len(t["stages"]), sum(t["steps"])) if t else (0, 0)


def _bm25(dataset: str, top_k: int, out: Path) -> dict[str, float]:
    """nDCG@10 and R@100 of the BM25 candidates themselves."""
    requests, qrels = judged(dataset, top_k, out)
    return evaluate(first_stage_run(requests), qrels, [MEASURE, RECALL])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dl19")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=MODEL",
                        help="a model to measure (repeatable): label=registry name or trained directory")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--dense", action="store_true",
                        help="also each model as a dense first stage over the whole corpus (top 100)")
    add_output_options(parser, "train_e2rank", "e2rank_training.md")
    args = parser.parse_args()
    set_up(args.threads, args.out)
    requests, qrels = judged(args.dataset, args.top_k, args.out)
    for spec in args.model:
        label, _, model = spec.partition("=")
        measure(args, label, model or label, requests, qrels)
        if args.dense:
            dense(args, label, model or label, qrels)
    write_report(args.table, lambda: report(args.out))


if __name__ == "__main__":
    main()
