"""Cross-encoder training figures: ``python benchmarks/train_crossencoder.py [--minutes 15]`` writes
benchmarks/results/train_crossencoder.md.

1. SciFact: one cross-encoder per objective (BCE, contrastive, ListNet, LambdaLoss, Margin-MSE), each from
   all-MiniLM-L6-v2, trained with ``rankwise train examples/train-crossencoder-scifact.yaml`` under the same
   wall-time budget on the training claims with BM25 negatives; test nDCG@10 reranking the BM25 top 20.
   Margin-MSE distils the all-MiniLM-L6-v2 bi-encoder's cosine scores (x20) over the same candidates.
2. Transfer: ``examples/train-crossencoder-dl20.yaml`` (DL20, BM25 negatives, graded qrels), tested on DL19
   BM25 top-100, and the reverse (the same config on DL19, tested on DL20).

Each training runs as the CLI command shown in the report. Budget: per training ``--minutes`` plus the
evaluation (SciFact test: 30,000 pairs). Smoke test: ``--max-steps 2 --eval-queries 5``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import yaml

from rankwise.cli.common import cpu_name
from rankwise.data import Run, load_dataset, read_run, requests_from_run, write_run
from rankwise.eval import evaluate
from rankwise.train.crossencoder_trainer import RESULTS_FILE, rerank_run
from rankwise.train.groups import cached_bm25_run, load_source

ROOT = Path(__file__).resolve().parents[1]
RANKWISE = Path(sys.executable).with_name("rankwise")
EXAMPLE = ROOT / "examples" / "train-crossencoder-scifact.yaml"
DL_EXAMPLE = ROOT / "examples" / "train-crossencoder-dl20.yaml"
OBJECTIVES = ("bce", "contrastive", "listnet", "lambda", "margin-mse")


def train(config: dict, work: Path, name: str, minutes: float, max_steps: int | None) -> tuple[Path, str, float]:
    """Write the config, run ``rankwise train`` on it; (model directory, the command, seconds)."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    out = work / name
    args = ["train", str(path), "--output", str(out), "--overwrite", "--max-minutes", str(minutes)]
    if max_steps:
        args += ["--max-steps", str(max_steps)]
    started = time.perf_counter()
    done = subprocess.run([str(RANKWISE), *args], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"rankwise {' '.join(args)} failed")
    return out, "rankwise " + " ".join(shlex.quote(a) for a in args), time.perf_counter() - started


def score(model_dir: Path, requests, qrels, top_k: int, max_length: int) -> tuple[float, float]:
    """(nDCG@10 of the reranked run over the requests' queries, seconds spent scoring), pairs cut to the
    ``max_length`` tokens the model was trained with."""
    import torch

    from rankwise.train.crossencoder_trainer import load_crossencoder, use_bf16

    model = load_crossencoder(str(model_dir), max_length)
    if use_bf16("auto"):  # inference in bf16 where the hardware has it (2-3x faster on such CPUs)
        model.to(torch.bfloat16)
    started = time.perf_counter()
    run = rerank_run(model, requests, top_k, show_progress=True)
    return ndcg10(run, qrels), time.perf_counter() - started


def ndcg10(run: Run, qrels) -> float:
    return evaluate(run, {q: qrels[q] for q in run if q in qrels}, ["nDCG@10"])["nDCG@10"]


def bi_encoder_teacher(work: Path, config: dict) -> Path:
    """all-MiniLM-L6-v2 cosine scores for the training claims' BM25 top-100, as a TREC run (built once)."""
    path = work / "teacher.minilm-biencoder.scifact-train.trec"
    if path.is_file():
        return path
    import numpy as np

    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend
    from rankwise.train.groups import doc_text

    d = config["data"]
    source = load_source(d["dataset"], d["queries"], None, d["first_stage"], d["depth"])
    wanted = {q: [*source.run.get(q, {}), *(d for d in source.qrels[q] if d not in source.run.get(q, {}))]
              for q in source.queries}
    docids = sorted({doc for docs in wanted.values() for doc in docs if doc in source.docs})
    qids = list(wanted)
    encoder = SentenceTransformerBackend("minilm-l6", show_progress=True)
    doc_vecs = dict(zip(docids, encoder.embed([doc_text(source.docs[x]) for x in docids])))
    query_vecs = encoder.embed([source.queries[q] for q in qids], kind="query")
    run: Run = {}
    for qid, qv in zip(qids, query_vecs):
        scored = {doc: float(np.dot(qv, doc_vecs[doc])) for doc in wanted[qid] if doc in doc_vecs}
        run[qid] = dict(sorted(scored.items(), key=lambda kv: -kv[1]))
    write_run(run, path, tag="minilm-biencoder")
    return path


def scifact_table(args, work: Path) -> list[str]:
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    ds = load_dataset("scifact")
    test = ds.judged_queries()
    bm25 = cached_bm25_run(ds, test, 100)
    requests = requests_from_run(bm25, test, ds.docs, 100)[: args.eval_queries]
    qrels = ds.qrels
    rows = ["| objective | loss | steps | train min | test nDCG@10 | eval s |", "|---|---|---:|---:|---:|---:|",
            f"| BM25 alone | | | | {ndcg10({r.query.qid: bm25[r.query.qid] for r in requests}, qrels):.4f} | |"]
    commands = []
    for objective in args.objectives:
        config = yaml.safe_load(yaml.safe_dump(base))
        config["crossencoder"]["objective"] = objective
        if args.max_length:
            config["training"]["max_length"] = args.max_length
        if args.learning_rate:
            config["training"]["learning_rate"] = args.learning_rate
        if objective == "margin-mse":
            config["data"]["teacher"] = str(bi_encoder_teacher(work, config))
            config["data"]["teacher_scale"] = 20.0
        out, command, _ = train(config, work, f"scifact-{objective}", args.minutes, args.max_steps)
        results = yaml.safe_load((out / RESULTS_FILE).read_text(encoding="utf-8"))
        value, seconds = score(out, requests, qrels, args.top_k, config["training"]["max_length"])
        loss = {"bce": "BinaryCrossEntropyLoss", "contrastive": "MultipleNegativesRankingLoss (group InfoNCE)",
                "listnet": "ListNetLoss", "lambda": "LambdaLoss (NDCGLoss2++)", "ranknet": "RankNetLoss",
                "margin-mse": "MarginMSELoss (bi-encoder teacher)"}[objective]
        rows.append(f"| {objective} | {loss} | {results['steps']} | {results['seconds'] / 60:.1f} | {value:.4f} "
                    f"| {seconds:.0f} |")
        commands.append(command)
        print("\n".join(rows), flush=True)
    return [*rows, "", "```", *commands, "```"]


def transfer_table(args, work: Path) -> list[str]:
    base = yaml.safe_load(DL_EXAMPLE.read_text(encoding="utf-8"))
    rows = ["| train | test | objective | steps | train min | BM25 nDCG@10 | reranked nDCG@10 |",
            "|---|---|---|---:|---:|---:|---:|"]
    commands = []
    for source, target in (("dl20", "dl19"), ("dl19", "dl20")):
        config = yaml.safe_load(yaml.safe_dump(base))
        config["data"]["dataset"] = source  # the example trains on DL20; the reverse swaps the year
        config["crossencoder"]["objective"] = args.transfer_objective
        out, command, _ = train(config, work, f"{source}-to-{target}", args.transfer_minutes, args.max_steps)
        results = yaml.safe_load((out / RESULTS_FILE).read_text(encoding="utf-8"))
        ds = load_dataset(target)
        requests = [r for r in ds.requests("bm25", top_k=100) if r.query.qid in ds.qrels][: args.eval_queries]
        first = read_run(ds.runs["bm25"])
        value, _ = score(out, requests, ds.qrels, args.transfer_top_k, config["training"]["max_length"])
        base_value = ndcg10({r.query.qid: first[r.query.qid] for r in requests}, ds.qrels)
        rows.append(f"| {source.upper()} | {target.upper()} | {args.transfer_objective} | {results['steps']} "
                    f"| {results['seconds'] / 60:.1f} | {base_value:.4f} | {value:.4f} |")
        commands.append(command)
        print("\n".join(rows), flush=True)
    return [*rows, "", "```", *commands, "```"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="Wall-time budget of each SciFact training.")
    parser.add_argument("--transfer-minutes", type=float, default=10.0, help="Wall-time budget of each DL training.")
    parser.add_argument("--max-steps", type=int, default=None, help="Also stop each training after N steps.")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="Comma-separated SciFact objectives.")
    parser.add_argument("--transfer-objective", default="listnet")
    parser.add_argument("--skip-transfer", action="store_true")
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--top-k", type=int, default=20,
                        help="SciFact: rerank the BM25 top k (100 is 30,000 pairs per model, ~10 min on 2 cores)")
    parser.add_argument("--transfer-top-k", type=int, default=100, help="TREC DL: rerank the BM25 top k.")
    parser.add_argument("--max-length", type=int, default=None,
                        help="SciFact: tokens per (claim, abstract) pair in training and scoring (default: the example's)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="SciFact: peak learning rate (default: the example's)")
    parser.add_argument("--eval-queries", type=int, default=None, help="Only the first N test queries (smoke).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rankwise-train-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_crossencoder.md")
    args = parser.parse_args()
    args.objectives = [o for o in args.objectives.split(",") if o]
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    command = "python benchmarks/train_crossencoder.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = ["# Training cross-encoders", "",
             f"Regenerate: `{command}` ({date.today()}). CPU: **{cpu_name()}, {os.cpu_count()} cores**; "
             f"load average {load_before:.1f} before. sentence-transformers {version('sentence-transformers')}, "
             f"transformers {version('transformers')}, torch {version('torch')}. Every model starts from "
             f"all-MiniLM-L6-v2 (a bi-encoder: the cross-encoder head is new) and trains for at most "
             f"{args.minutes:g} (SciFact) / {args.transfer_minutes:g} (TREC DL) minutes"
             + (f" / {args.max_steps} steps" if args.max_steps else "") +
             f"; evaluation reranks the BM25 top {args.top_k} (SciFact) / {args.transfer_top_k} (TREC DL)"
             + (f" of the first {args.eval_queries} test queries (smoke run)" if args.eval_queries else "") + "."]
    if not args.skip_scifact:
        lines += ["", "## SciFact: objectives under the same budget", "",
                  "Training: SciFact's training claims (raw/claims_train.csv.gz, evidence abstracts relevant; the "
                  "2 claims that also appear in the test split dropped), groups of 1 positive + 7 BM25 top-100 "
                  "negatives, 10% of the claims held out by query. Test: the 300 BEIR test claims.", "",
                  *scifact_table(args, args.work)]
    if not args.skip_transfer:
        lines += ["", "## TREC DL transfer", "",
                  "Training: the judged queries of one year, grade >= 2 positives (graded labels kept), 7 negatives "
                  "from the BM25 top 100 (grade < 2), passages cut to 192 tokens.", "",
                  *transfer_table(args, args.work)]
    lines += ["", f"Total wall time {(time.perf_counter() - started) / 60:.1f} min; load average "
                  f"{os.getloadavg()[0]:.1f} after."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
