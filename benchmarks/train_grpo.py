"""GRPO figures: ``python benchmarks/train_grpo.py [--minutes 20]`` writes benchmarks/results/train_grpo.md.

Trains ``examples/train-grpo-groupwise.yaml`` (SmolLM2-135M + LoRA, groupwise format, DL20 groups) with
``rankwise train``, then reranks the DL19 BM25 top ``--top-k`` in groups of 5 with greedy answers, with the
untrained model and with the trained one (merged adapter): nDCG@10 and the share of unparsable answers.
The mean reward per step is in the output's rewards.json / rewards.png (copied next to the results).
Smoke test: ``--max-steps 2 --eval-queries 1 --top-k 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset, read_run
from rankwise.eval import evaluate
from rankwise.train.config import load_config
from rankwise.train.grpo import groupwise_rerank, load_causal_lm

ROOT = Path(__file__).resolve().parents[1]
RANKWISE = Path(sys.executable).with_name("rankwise")
EXAMPLE = ROOT / "examples" / "train-grpo-groupwise.yaml"


def dl19_ndcg(model_name: str, requests, qrels, top_k: int, group_size: int, passage_words: int):
    model, tokenizer = load_causal_lm(model_name)
    started = time.perf_counter()
    run, failures = groupwise_rerank(model, tokenizer, requests, top_k, group_size, passage_words)
    groups = len(requests) * -(-top_k // group_size)
    value = evaluate(run, {q: qrels[q] for q in run}, ["nDCG@10"])["nDCG@10"]
    return value, failures / groups, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=20, help="Rerank the DL19 BM25 top k in groups.")
    parser.add_argument("--eval-queries", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rankwise-train-bench/grpo"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_grpo.md")
    args = parser.parse_args()
    config = load_config(EXAMPLE)
    out = args.work
    train_args = ["train", str(EXAMPLE), "--output", str(out), "--overwrite", "--max-minutes", str(args.minutes)]
    if args.max_steps:
        train_args += ["--max-steps", str(args.max_steps)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([str(RANKWISE), *train_args], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit("rankwise train failed")
    results = json.loads((out / "train-results.json").read_text())
    rewards = json.loads((out / "rewards.json").read_text())
    ds = load_dataset("dl19")
    requests = [r for r in ds.requests("bm25", top_k=100) if r.query.qid in ds.qrels][: args.eval_queries]
    g = config.grpo
    rows = ["| model | DL19 nDCG@10 | unparsable groups | eval s |", "|---|---:|---:|---:|"]
    bm25 = read_run(ds.runs["bm25"])
    rows.append(f"| BM25 alone | {evaluate({r.query.qid: bm25[r.query.qid] for r in requests}, ds.qrels, ['nDCG@10'])['nDCG@10']:.4f} | | |")
    for label, name in (("SmolLM2-135M untrained", config.model), ("after GRPO (merged LoRA)", str(out))):
        value, failed, seconds = dl19_ndcg(name, requests, ds.qrels, args.top_k, g.group_size, g.passage_words)
        rows.append(f"| {label} | {value:.4f} | {failed:.0%} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot = args.out.with_name("train_grpo_rewards.png")
    if (out / "rewards.png").is_file():
        shutil.copyfile(out / "rewards.png", plot)
    command = "python benchmarks/train_grpo.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = ["# GRPO for the groupwise format", "",
             f"Regenerate: `{command}` ({date.today()}). CPU: **{cpu_name()}, {os.cpu_count()} cores**; load average "
             f"{load_before:.1f} before. trl {version('trl')}, peft {version('peft')}, transformers "
             f"{version('transformers')}, torch {version('torch')}.", "",
             f"Training: `rankwise {' '.join(shlex.quote(a) for a in train_args)}`: {results['steps']} steps in "
             f"{results['seconds'] / 60:.1f} min, {results['train_groups']} DL20 groups of {g.group_size}, "
             f"{g.num_generations} completions per prompt. Mean reward first step {results['first_reward']:.3f}, "
             f"last {results['last_reward']:.3f} (weights {g.rewards}).", "",
             f"![mean reward per step]({plot.name})" if plot.is_file() else "(no plot: matplotlib missing)", "",
             "| step | mean reward | " + " | ".join(k.split("/")[1] for k in rewards[0] if k.startswith("rewards/")) + " |",
             "|---:|---:|" + "---:|" * sum(k.startswith("rewards/") for k in rewards[0]),
             *(f"| {r['step']} | {r['reward']:.3f} | " + " | ".join(f"{v:.3f}" for k, v in r.items()
                                                                 if k.startswith("rewards/")) + " |" for r in rewards),
             "", f"## DL19 (BM25 top {args.top_k} in groups of {g.group_size}"
             + (f", first {args.eval_queries} queries)" if args.eval_queries else ")"), "", *rows, "",
             f"Total wall time {(time.perf_counter() - started) / 60:.1f} min."]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
