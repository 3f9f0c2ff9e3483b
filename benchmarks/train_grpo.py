"""GRPO figures: ``python benchmarks/train_grpo.py [--minutes 20]`` writes benchmarks/results/train_grpo.md.

Trains ``examples/train-grpo-groupwise.yaml`` (SmolLM2-135M + LoRA, groupwise.generate with the
groupwise.json prompt, DL20 groups) with ``rankwise train``, then reranks the DL19 BM25 top ``--top-k``
through the library (``rankwise.train.grpo.load_trained`` + ``rankwise.pipeline.run``: the method and
options the model was trained for, greedy answers) with the untrained model and with the trained one
(merged adapter): nDCG@10 and the share of unparsable answers.
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
from collections import Counter
from datetime import date
from importlib.metadata import version
from pathlib import Path

from rankwise.llm.hardware import cpu_info
from rankwise.data import load_dataset, read_run
from rankwise.eval import evaluate
from rankwise.pipeline import run
from rankwise.train.config import GrpoConfig, load_config, save_config
from rankwise.train.grpo import load_trained
from rankwise.types import Ranking, Request

ROOT = Path(__file__).resolve().parents[1]
RANKWISE = Path(sys.executable).with_name("rankwise")
EXAMPLE = ROOT / "examples" / "train-grpo-groupwise.yaml"


def group_answers(ranking: Ranking, request: Request, top_k: int, group_size: int) -> list[str]:
    """Each group's scores in the order shown, as the method read them (one round: consecutive groups of
    the top ``top_k``); an unparsable answer shows the logits fallback's scores."""
    score = dict(zip(ranking.docids, ranking.scores))
    head = [c.docid for c in request.candidates[:top_k]]
    return ["[" + ", ".join(f"{score[d]:g}" for d in head[i:i + group_size]) + "]"
            for i in range(0, len(head), group_size)]


def dl19_ndcg(model_name: str, requests: list[Request], qrels, top_k: int, g: GrpoConfig):
    """nDCG@10, share of unparsable groups, seconds, and each group's answer as read (one per group)."""
    result = run(load_trained(model_name, g, dtype="float32") % top_k, requests)
    value = evaluate(result.run(), {q: qrels[q] for q in result.rankings}, ["nDCG@10"])["nDCG@10"]
    answers = [a for r in requests for a in group_answers(result.rankings[r.query.qid], r, top_k, g.group_size)]
    return value, result.usage.parse_failures / len(answers), result.wall_seconds, answers


def _reading(evals: dict, bm25: float) -> str:
    """One sentence on what the figures say, from the figures."""
    (_, (before, failed0, _, _)), (_, (after, failed1, distinct, share)) = evals.items()
    parts = [f"Reading: after GRPO nDCG@10 {after:.4f} against {before:.4f} untrained and {bm25:.4f} for BM25; "
             f"unparsable groups {failed0:.0%} -> {failed1:.0%}."]
    if share >= 0.9:
        parts.append(f"The trained model gives one answer to {share:.0%} of the groups: it learned the answer "
                     "format, not to tell passages apart, so its ranking does not depend on the passages.")
    return " ".join(parts)


def _link(path: Path) -> str:
    """Image paths relative to the repository root, as BENCHMARKS.md (which includes this file) needs."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=20, help="Rerank the DL19 BM25 top k in groups.")
    parser.add_argument("--eval-queries", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rankwise-train-bench/grpo"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_grpo.md")
    parser.add_argument("--model", default=None, help="Override the example's model (e.g. qwen2.5-0.5b).")
    parser.add_argument("--eval-only", action="store_true",
                        help="Skip training: evaluate the model already in --work (trained with the other options).")
    args = parser.parse_args()
    config = load_config(EXAMPLE)
    out = args.work
    source = EXAMPLE
    if args.model:  # the example with another model, written beside the output
        config.model = args.model
        source = out.with_name(out.name + "-config.yaml")
        source.parent.mkdir(parents=True, exist_ok=True)
        save_config(config, source)
    train_args = ["train", str(source), "--output", str(out), "--overwrite", "--max-minutes", str(args.minutes)]
    if args.max_steps:
        train_args += ["--max-steps", str(args.max_steps)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    if not args.eval_only:
        done = subprocess.run([str(RANKWISE), *train_args], env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            raise SystemExit("rankwise train failed")
    results = json.loads((out / "train-results.json").read_text())
    rewards = json.loads((out / "rewards.json").read_text())
    ds = load_dataset("dl19")
    requests = [r for r in ds.requests("bm25", top_k=100) if r.query.qid in ds.qrels][: args.eval_queries]
    g = config.grpo
    rows = ["| model | DL19 nDCG@10 | unparsable groups | distinct answers | most common answer | eval s |",
            "|---|---:|---:|---:|---|---:|"]
    bm25 = read_run(ds.runs["bm25"])
    judged = {r.query.qid: ds.qrels[r.query.qid] for r in requests}  # only the evaluated queries count
    bm25_ndcg = evaluate({q: bm25[q] for q in judged}, judged, ["nDCG@10"])["nDCG@10"]
    rows.append(f"| BM25 alone | {bm25_ndcg:.4f} | | | | |")
    evals = {}
    for label, name in ((f"{config.model} untrained", config.model), ("after GRPO (merged LoRA)", str(out))):
        value, failed, seconds, answers = dl19_ndcg(name, requests, ds.qrels, args.top_k, g)
        common, count = Counter(answers).most_common(1)[0]
        evals[label] = (value, failed, len(set(answers)), count / len(answers))
        rows.append(f"| {label} | {value:.4f} | {failed:.0%} | {len(set(answers))} of {len(answers)} | "
                    f"`{common.strip()[:40]}` ({count / len(answers):.0%}) | {seconds:.0f} |")
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot = args.out.with_name("train_grpo_rewards.png")
    if (out / "rewards.png").is_file():
        shutil.copyfile(out / "rewards.png", plot)
    command = "python benchmarks/train_grpo.py " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--eval-only")
    cpu = cpu_info()
    native = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in cpu.flags]
    keys = [k for k in rewards[0] if k.startswith("rewards/")]
    block = max(1, len(rewards) // 8)
    first, last = _mean(rewards[:block], "reward"), _mean(rewards[-block:], "reward")
    lines = ["# GRPO for the groupwise format", "",
             f"Regenerate: `{command}` ({date.today()}). CPU: **{cpu.model_name}, {os.cpu_count()} cores**, "
             f"{', '.join(native) + ' present' if native else 'no avx512_bf16 / AMX'} (training in "
             f"{'bf16' if results['bf16'] else 'fp32'}); load average {load_before:.1f} before. trl {version('trl')}, "
             f"peft {version('peft')}, transformers {version('transformers')}, torch {version('torch')}.", "",
             f"Training: `rankwise {' '.join(shlex.quote(_link(Path(a)) if a == str(source) else a) for a in train_args)}`: "
             f"{results['steps']} steps in "
             f"{results['seconds'] / 60:.1f} min, {config.model} + LoRA r={g.lora_r}, {results['train_groups']} DL20 "
             f"groups of {g.group_size}, {config.training.batch_size} prompts x {g.num_generations} completions "
             f"per step, the assistant turn prefilled with `{g.answer_prefix}`. Reward weights {g.rewards}. Mean "
             f"reward of the first {block} steps **{first:.3f}**, of the last {block} steps **{last:.3f}** "
             f"(single steps: first {results['first_reward']:.3f}, last {results['last_reward']:.3f}).", "",
             f"![mean reward per step]({_link(plot)})" if plot.is_file() else "(no plot: matplotlib missing)", "",
             f"Means over blocks of {block} steps (reward_std: spread of the rewards within a step; "
             "zero-spread: share of prompts whose completions all scored the same, which GRPO cannot learn from):",
             "", "| steps | mean reward | " + " | ".join(k.split("/")[1] for k in keys)
             + " | reward_std | zero-spread | completion tokens |",
             "|---|---:|" + "---:|" * (len(keys) + 3)]
    for i in range(0, len(rewards), block):
        part = rewards[i:i + block]
        lines.append(f"| {part[0]['step']}-{part[-1]['step']} | {_mean(part, 'reward'):.3f} | "
                     + " | ".join(f"{_mean(part, k):.3f}" for k in keys)
                     + f" | {_mean(part, 'reward_std'):.3f} | {_mean(part, 'frac_reward_zero_std'):.0%} | "
                     f"{_mean(part, 'completions/mean_length'):.1f} |")
    lines += ["", f"## DL19 (BM25 top {args.top_k} in groups of {g.group_size}"
              + (f", first {len(requests)} judged queries)" if args.eval_queries else ", all judged queries)"), "",
              f"Reranked by `groupwise.generate` with the options trained ({g.prompt}, answer prefix "
              f"`{g.answer_prefix}`, passages cut to {g.max_passage_tokens} tokens), greedy answers; an unparsable "
              "answer's documents are scored by the method's logits fallback. Distinct answers: how many different "
              "score lists the method read over all groups (one answer for every group means the model ignores "
              "the passages).", "", *rows, "", _reading(evals, bm25_ndcg), "",
              f"{'Evaluation' if args.eval_only else 'Total'} wall time {(time.perf_counter() - started) / 60:.1f} min"
              + (" (`--eval-only`: the model trained by the command above, evaluated again)." if args.eval_only else ".")]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
