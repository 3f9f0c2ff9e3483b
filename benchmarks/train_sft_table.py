"""The DL19 table of benchmarks/train_sft.sh: nDCG@10 of every run it wrote, each compared (paired
randomisation test) with BM25, the untrained qwen2.5-0.5b and the untrained qwen2.5-1.5b, plus each trained
model's training summary. Usage: python benchmarks/train_sft_table.py [runs]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from rankwise.data import load_dataset, read_run
from rankwise.eval.significance import compare_runs

BASELINES = {"BM25": "bm25", "untrained 0.5b": "qwen2.5-0.5b.untrained", "untrained 1.5b": "qwen2.5-1.5b.untrained"}
TRAINED = ["sft-05b-dl20", "contrastive-05b-dl20", "distill-05b-dl20", "sft-05b-dl20-55m"]
ROWS = ["qwen2.5-0.5b.untrained", *TRAINED, "qwen2.5-1.5b.untrained"]


def main(out: Path) -> None:
    ds = load_dataset("dl19")
    runs = {"bm25": read_run(ds.runs["bm25"])}
    runs.update({name: read_run(out / "eval" / f"dl19.{name}.trec") for name in ROWS
                 if (out / "eval" / f"dl19.{name}.trec").is_file()})
    head = "| reranker (pointwise.yes_no, BM25 top 20) | DL19 nDCG@10 | " + \
        " | ".join(f"vs {b} (p)" for b in BASELINES) + " |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for name, run in runs.items():
        cells = []
        for label, base in BASELINES.items():
            if base == name or base not in runs:
                cells.append("")
                continue
            (c,) = compare_runs(runs[base], run, ds.qrels, ["nDCG@10"])
            p = "<0.001" if c.randomisation_p < 0.001 else f"{c.randomisation_p:.3f}"
            cells.append(f"{c.delta:+.4f} ({p})")
        (c,) = compare_runs(run, run, ds.qrels, ["nDCG@10"])
        print(f"| {name} | {c.mean_a:.4f} | " + " | ".join(cells) + " |")
    for model in TRAINED:
        results = out / model / "train-results.json"
        if results.is_file():
            r = json.loads(results.read_text())
            rows = json.loads((out / model / "loss.json").read_text())
            t = yaml.safe_load((out / model / "train-config.yaml").read_text())["training"]
            groups = r["steps"] * t["batch_size"] * t["gradient_accumulation"]
            print(f"\n{model}: {r['steps']} steps ({groups} of {r['train_groups']} groups), this process "
                  f"{r['seconds'] / 60:.1f} min; logged loss {rows[0]['loss']:.3f} (step {rows[0]['step']}) -> "
                  f"{rows[-1]['loss']:.3f} (step {rows[-1]['step']}); resumed from {r['resumed_from']}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
