"""The DL19 tables of benchmarks/train_listwise.sh, from the headline cells (benchmarks/headline/cells) and the
untrained runs' usage (runs/eval/*.usage.json): listwise SFT and FIRST against the untrained qwen2.5-0.5b with
the same method (nDCG@10, windows kept in the order shown, repaired answers), and the distilled pointwise
student against the qrels-only SFT, both untrained models and BM25 (paired randomisation tests over the 43
queries), with each training run's summary. Usage: python benchmarks/train_listwise_table.py [runs]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from rankwise.bench.headline import Row, p_value

CELLS = Path(__file__).resolve().parent / "headline" / "cells"
LISTWISE = {"listwise.window": "sft-listwise-05b", "listwise.first": "sft-first-05b"}
POINTWISE = ["qwen2.5-0.5b", "runs/sft-05b-dl20", "runs/distill-05b-dl20", "qwen2.5-1.5b"]


def row(method: str, model: str) -> Row | None:
    name = "first-stage" if method == "BM25" else f"{method}__{model.replace('/', '-')}"
    path = CELLS / f"dl19__bm25__top20__qall__{name}.json"
    return Row("dl19", method, model, 20, json.loads(path.read_text())) if path.is_file() else None


def _p(a: Row | None, b: Row) -> str:
    p = p_value(a, b)
    if p is None:
        return ""
    return f"{b.mean - a.mean:+.4f} ({'<0.001' if p < 0.001 else f'{p:.3f}'})"


def _echo(counts: dict) -> tuple[str, str]:
    windows = counts.get("windows")
    if not windows:
        return "not counted", str(counts.get("parse_failures", ""))
    return f"{counts['unchanged_windows']} of {windows}", str(counts["parse_failures"])


def listwise_table(out: Path) -> list[str]:
    bm25 = row("BM25", "")
    lines = ["| method | model | DL19 nDCG@10 | vs BM25 (p) | vs untrained (p) | windows kept in the order "
             "shown | queries whose top 10 is BM25's | answers repaired | s/query | CPU |", "|" + "---|" * 10]
    for method, trained in LISTWISE.items():
        untrained = row(method, "qwen2.5-0.5b")
        usage_file = out / "eval" / f"dl19.qwen2.5-0.5b.{method.split('.')[1]}.usage.json"
        untrained_counts = json.loads(usage_file.read_text()) if usage_file.is_file() else {}
        for model, r in (("qwen2.5-0.5b (untrained)", untrained), (f"runs/{trained}", row(method, f"runs/{trained}"))):
            if r is None:
                lines.append(f"| `{method}` | {model} | not run | | | | | | | |")
                continue
            echoed, repaired = _echo(r.cell if "windows" in r.cell else untrained_counts or r.cell)
            as_bm25 = sum(top == bm25.cell["top10"][q] for q, top in r.cell["top10"].items())
            lines.append(f"| `{method}` | {model} | {r.mean:.4f} | {_p(bm25, r)} | "
                         f"{'' if r is untrained else _p(untrained, r)} | {echoed} | {as_bm25} of "
                         f"{len(r.cell['top10'])} | {repaired} | "
                         f"{r.cell['seconds_per_query']:.1f} | {r.cell.get('cpu_class', '')} |")
    return lines


def pointwise_table() -> list[str]:
    rows = {"BM25": row("BM25", ""), **{m: row("pointwise.yes_no", m) for m in POINTWISE}}
    bases = {"BM25": rows["BM25"], "untrained 0.5b": rows["qwen2.5-0.5b"], "qrels SFT": rows["runs/sft-05b-dl20"],
             "untrained 1.5b": rows["qwen2.5-1.5b"]}
    lines = ["| reranker (pointwise.yes_no, BM25 top 20) | DL19 nDCG@10 | "
             + " | ".join(f"vs {b} (p)" for b in bases) + " |", "|" + "---|" * (2 + len(bases))]
    for name, r in rows.items():
        if r is None:
            lines.append(f"| {name} | not run |" + " |" * len(bases))
            continue
        lines.append(f"| {name} | {r.mean:.4f} | " + " | ".join("" if b is r else _p(b, r) for b in bases.values())
                     + " |")
    return lines


def training_summary(out: Path, name: str) -> str:
    results = out / name / "train-results.json"
    if not results.is_file():
        return f"{name}: not trained"
    r = json.loads(results.read_text())
    losses = json.loads((out / name / "loss.json").read_text())
    t = yaml.safe_load((out / name / "train-config.yaml").read_text())["training"]
    groups = r["steps"] * t["batch_size"] * t["gradient_accumulation"]
    loss = (f"logged loss {losses[0]['loss']:.3f} (step {losses[0]['step']}) -> {losses[-1]['loss']:.3f} "
            f"(step {losses[-1]['step']})") if losses else "no loss logged"
    return (f"{name}: {r['steps']} steps ({groups} of {r['train_groups']} groups), {r['seconds'] / 60:.1f} min in "
            f"this process; {loss}" + (f"; resumed from {r['resumed_from']}" if r.get("resumed_from") else ""))


def main(out: Path) -> None:
    print("\n".join(listwise_table(out)) + "\n")
    print("\n".join(pointwise_table()) + "\n")
    for name in ("sft-listwise-05b", "sft-first-05b", "distill-05b-dl20"):
        print(f"- {training_summary(out, name)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
