"""The GRPO recipes' table: ``python benchmarks/train_recipes_table.py runs`` reads what
``benchmarks/train_recipes.sh`` wrote under ``runs/`` (training results, reward logs, DL19 run files) and
writes benchmarks/results/train_recipes.md (+ one reward plot per recipe).

Per recipe: the start point, steps, minutes, DL19 nDCG@10 before/after on the same queries and candidates
(BM25 top 20) with a paired randomisation test, parse failures, the distinct-answer rate (groupwise: the
share of groups whose answer differs from every other group's... counted as distinct answers / groups),
and the reward trajectory (first and last blocks of steps: total reward, each component, the spread within
a prompt's completions, the share of zero-spread prompts, distinct answers, KL).
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date
from importlib.metadata import version
from pathlib import Path

from rankwise.data import load_dataset, read_run
from rankwise.eval import evaluate_per_query, randomisation_test
from rankwise.llm.hardware import cpu_info

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "train_recipes.md"
RECORDS = OUT.with_name("train_recipes")

RECIPES = [
    # name, output dir, example, method, start label (eval file), start description, trained eval file
    ("GroupRank, first run (ties in prompt order)", "grouprank-05b-v1", "train-grouprank.yaml", "groupwise.generate",
     "grouprank.start", "pointwise SFT checkpoint (issue 31)", "grouprank-v1"),
    ("GroupRank, second run", "grouprank-05b", "train-grouprank.yaml", "groupwise.generate", "grouprank.start",
     "pointwise SFT checkpoint (issue 31)", "grouprank"),
    ("GroupRank cold start (groupwise SFT stage)", "grouprank-sft-05b/stages/1-sft", "train-grouprank.yaml",
     "groupwise.generate", "qwen2.5-0.5b.grouprank", "qwen2.5-0.5b-instruct", "grouprank-sft.start"),
    ("GroupRank (RL stage, from the groupwise SFT)", "grouprank-sft-05b", "train-grouprank.yaml",
     "groupwise.generate", "grouprank-sft.start", "its groupwise SFT stage (row above)", "grouprank-sft"),
    ("GroupRank, 1-3 relevant per group (groupwise SFT stage)", "grouprank-mixed-05b/stages/1-sft",
     "train-grouprank.yaml", "groupwise.generate", "qwen2.5-0.5b.grouprank", "qwen2.5-0.5b-instruct",
     "grouprank-mixed.start"),
    ("GroupRank, 1-3 relevant per group (RL stage)", "grouprank-mixed-05b", "train-grouprank.yaml",
     "groupwise.generate", "grouprank-mixed.start", "its groupwise SFT stage (row above)", "grouprank-mixed"),
    ("GroupRank, score lines (groupwise SFT stage)", "grouprank-lines-05b/stages/1-sft", "train-grouprank.yaml",
     "groupwise.generate", "qwen2.5-0.5b.grouprank-lines", "qwen2.5-0.5b-instruct", "grouprank-lines.start"),
    ("GroupRank, score lines (RL stage)", "grouprank-lines-05b", "train-grouprank.yaml", "groupwise.generate",
     "grouprank-lines.start", "its groupwise SFT stage (row above)", "grouprank-lines"),
    ("GroupRank, teacher's scores (groupwise SFT stage)", "grouprank-teacher-05b/stages/1-sft",
     "train-grouprank.yaml", "groupwise.generate", "qwen2.5-0.5b.grouprank-lines", "qwen2.5-0.5b-instruct",
     "grouprank-teacher.start"),
    ("GroupRank, teacher's scores (RL stage)", "grouprank-teacher-05b", "train-grouprank.yaml",
     "groupwise.generate", "grouprank-teacher.start", "its groupwise SFT stage (row above)", "grouprank-teacher"),
    ("ERank (RL stage)", "erank-05b", "train-erank.yaml", "pointwise.yes_no", "sft-05b-dl20",
     "pointwise SFT checkpoint (issue 31)", "erank"),
    ("ProRank", "prorank-05b", "train-prorank.yaml", "pointwise.graded", "qwen2.5-0.5b.graded",
     "qwen2.5-0.5b-instruct", "prorank"),
    ("Rank-R1", "rank-r1-05b", "train-rank-r1.yaml", "setwise.reasoning", "qwen2.5-0.5b.rank-r1.10q",
     "qwen2.5-0.5b-instruct", "rank-r1.10q"),
    ("ReasonRank", "reasonrank-05b", "train-reasonrank.yaml", "listwise.window", "qwen2.5-0.5b.reasonrank.10q",
     "qwen2.5-0.5b-instruct", "reasonrank.10q"),
]
GROUP_SIZE, TOP_K = 5, 20


def ndcg(run_file: Path, qrels) -> dict[str, float]:
    run = read_run(run_file)
    return {q: v["nDCG@10"] for q, v in evaluate_per_query(run, {q: qrels[q] for q in run if q in qrels},
                                                             ["nDCG@10"]).items()}


def distinct_group_answers(run_file: Path, bm25) -> tuple[int, int, int]:
    """(distinct answers, varied answers, groups) of a groupwise.generate run: each group of 5 consecutive BM25
    candidates answered one list of scores, read back from the run's scores; an answer is varied when it gives
    its passages more than one score (a passage-dependent answer; one score for all keeps the input order)."""
    run = read_run(run_file)
    answers = []
    for qid, scored in run.items():
        head = sorted(bm25[qid], key=lambda d: -bm25[qid][d])[:TOP_K]
        for i in range(0, len(head), GROUP_SIZE):
            answers.append(tuple(round(scored.get(d, float("nan")), 3) for d in head[i:i + GROUP_SIZE]))
    return len(set(answers)), sum(len(set(a)) > 1 for a in answers), len(answers)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def trajectory(rows: list[dict]) -> list[str]:
    """A markdown table of the reward log in up to 6 blocks of steps."""
    keys = sorted({k for r in rows for k in r if k.startswith("rewards/")})
    extra = [k for k in ("reward_std", "frac_reward_zero_std", "answers/distinct", "answers/top_share", "kl")
             if any(k in r for r in rows)]
    names = [k.split("/")[1].removesuffix("_reward") for k in keys]
    lines = ["| steps | reward | " + " | ".join(names + [e.replace("frac_reward_zero_std", "zero-spread share")
                                                       for e in extra]) + " |",
             "|---|" + "---:|" * (1 + len(keys) + len(extra))]
    block = max(1, -(-len(rows) // 6))
    for i in range(0, len(rows), block):
        part = rows[i:i + block]
        lines.append(f"| {part[0]['step']}-{part[-1]['step']} | {_fmt(_mean(part, 'reward'))} | "
                     + " | ".join(_fmt(_mean(part, k)) for k in keys + extra) + " |")
    return lines


def measure(runs: Path, recipe: tuple, ds, bm25, cpu) -> dict | None:
    """One recipe's row (table cells after the recipe's name), reward trajectory and CPU, from its run under
    ``runs``; None when it has not been trained there."""
    name, out, example, method, start_label, start_desc, label = recipe
    results_file = runs / out / "train-results.json"
    after_file, start_file = runs / "eval" / f"dl19.{label}.trec", runs / "eval" / f"dl19.{start_label}.trec"
    if not results_file.is_file():
        return None
    results = json.loads(results_file.read_text())
    stages = results.get("stages") or [{"name": "train", "steps": results["steps"], "seconds": results["seconds"]}]
    trained = [s for s in stages if Path(s.get("output", out)).name != "1-sft" or "RL stage" not in name]
    cells = [f"`{method}`", start_desc, " + ".join(str(s["steps"]) for s in trained),
             f"{sum(s['seconds'] for s in trained) / 60:.1f}"]
    if after_file.is_file() and start_file.is_file():
        before, after = ndcg(start_file, ds.qrels), ndcg(after_file, ds.qrels)
        qids = sorted(set(before) & set(after))
        b = [before[q] for q in qids]
        a = [after[q] for q in qids]
        fails = []
        for f in (start_file, after_file):
            usage = json.loads(f.with_name(f.name.replace(".trec", ".usage.json")).read_text())
            fails.append(f"{usage['parse_failures']}/{usage['calls']}")
        distinct = "n/a"
        if method == "groupwise.generate":
            distinct = " / ".join("{0}/{2} ({1} varied)".format(*distinct_group_answers(f, bm25))
                                  for f in (start_file, after_file))
        cells += [str(len(qids)), f"{ndcg_of_bm25(bm25, ds.qrels, qids):.4f}", f"{sum(b) / len(b):.4f}",
                  f"{sum(a) / len(a):.4f}", f"{(sum(a) - sum(b)) / len(b):+.4f} ({randomisation_test(b, a):.3f})",
                  " / ".join(fails), distinct]
    else:
        cells += [""] * 7
    greedy = results.get("greedy_answers")
    cells += [str(results.get("collapsed_at") or "no"),
              f"{greedy['distinct']} distinct of {greedy['prompts']}; `{greedy['most_common']}` "
              f"{greedy['most_common_share']:.0%}" if greedy else "not recorded (run before the probe)"]
    details = []
    rewards = runs / out / "rewards.json"
    if rewards.is_file():
        plot = OUT.with_name(f"train_recipe_{out.replace('/', '-')}.png")
        if (runs / out / "rewards.png").is_file():
            shutil.copyfile(runs / out / "rewards.png", plot)
        details = [f"Start: {start_desc}; {results.get('prompts', '?')} training prompts; "
                   f"`rankwise train examples/{example}`" + (f" (stages: {', '.join(s['name'] for s in stages)}; "
                                                              "the reward log is the last stage's)"
                                                              if results.get("stages") else "") + ".", "",
                   *trajectory(json.loads(rewards.read_text())), "", f"![rewards]({plot.relative_to(ROOT)})", ""]
    return {"recipe": name, "cells": cells, "cpu": cpu.describe(), "cpu_class": cpu.cpu_class,
            "dtype": results.get("dtype") or ("bfloat16" if results.get("bf16") else "float32"),
            "recorded": str(date.today()), "details": details}


def record_path(out: str) -> Path:
    return RECORDS / f"{out.replace('/', '-')}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    args = parser.parse_args()
    ds = load_dataset("dl19")
    bm25 = read_run(ds.runs["bm25"])
    cpu = cpu_info()
    RECORDS.mkdir(parents=True, exist_ok=True)
    summary = ["| recipe | method | start | steps | train min | queries | BM25 | nDCG@10 start | nDCG@10 after "
               "| after - start (p) | parse failures start / after | distinct answers start / after | collapse check "
               "stopped at | greedy probe after training | CPU class (training dtype) |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    details = []
    for recipe in RECIPES:
        name, out, example = recipe[:3]
        record = measure(args.runs, recipe, ds, bm25, cpu)
        if record is not None:
            record_path(out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        elif record_path(out).is_file():  # measured on an earlier machine; its runs are not here
            record = json.loads(record_path(out).read_text(encoding="utf-8"))
        if record is None:
            summary.append(f"| {name} | `{recipe[3]}` | {recipe[5]} | not run | | | | | | | | | | | |")
            continue
        summary.append(f"| {name} | " + " | ".join(record["cells"]) + f" | {record['cpu_class']} "
                       f"({record['dtype']}) |")
        if record["details"]:
            details += [f"### {name} (`examples/{example}`)", "", *record["details"]]
    text = ["# GRPO recipes on qwen2.5-0.5b (issue 32)", "",
            f"Regenerate: `OUT=runs bash benchmarks/train_recipes.sh` then `python benchmarks/train_recipes_table.py "
            f"runs` ({date.today()}): a recipe trained under runs/ is measured anew and its row saved in "
            f"{RECORDS.relative_to(ROOT)}/; rows of runs that are not here come from there. Each row names the CPU "
            "class it trained and was evaluated on, 2 cores; `dtype: auto` trains in bf16 with fp32 LoRA weights "
            "where the CPU computes bf16 natively (AMX) and in fp32 elsewhere, and evaluates in the same dtype "
            f"(transformers engine, no cache). trl {version('trl')}, peft {version('peft')}, "
            f"transformers {version('transformers')}, torch {version('torch')}.", "",
            "DL19, the BM25 candidates reranked by the method each recipe trains, before (start) and after training, "
            "on the same candidates; p from a paired randomisation test over the queries. GroupRank, ERank and "
            "ProRank: all 43 judged queries, BM25 top 20; Rank-R1 and ReasonRank: the first 10 judged query ids, "
            "BM25 top 10 (reasoning generation on 2 CPU cores). Distinct answers (groupwise): different score "
            "lists over all groups of 5; varied: the groups whose answer gives its passages more than one score "
            "(counted where the run files were on the measuring machine: the fifth and sixth GroupRank runs). "
            "Greedy probe: 16 training prompts answered greedily after training (the answer the method reranks "
            "with).", "",
            *summary, "", *notes(), *details]
    OUT.write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(summary))


def notes() -> list[str]:
    """The hand-written reading of the figures (benchmarks/train_recipes_notes.md), kept beside the script."""
    path = ROOT / "benchmarks" / "train_recipes_notes.md"
    return [path.read_text(encoding="utf-8").strip(), ""] if path.is_file() else []


def ndcg_of_bm25(bm25, qrels, qids: list[str]) -> float:
    values = evaluate_per_query({q: bm25[q] for q in qids}, {q: qrels[q] for q in qids}, ["nDCG@10"])
    return sum(v["nDCG@10"] for v in values.values()) / len(qids)


if __name__ == "__main__":
    main()
