"""Paired comparisons between headline cells (same dataset and candidates): each row's nDCG@10, and its delta
against every baseline cell with the paired randomisation test over the queries both hold.
Usage: python benchmarks/compare_cells.py --baseline CELL [--baseline CELL ...] CELL [CELL ...]
(CELL: a file under benchmarks/headline/cells, its name alone, or a glob such as 'dl19*sft-05b*')."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rankwise.eval.significance import randomisation_test

CELLS = Path(__file__).parent / "headline" / "cells"


def matches(name: str) -> list[Path]:
    """The cell files a name stands for: a path, a file name under CELLS, or a glob over CELLS."""
    if Path(name).is_file():
        return [Path(name)]
    pattern = name if name.endswith(".json") else name + ".json"
    found = sorted(p for p in CELLS.glob(pattern) if not p.name.endswith(".partial.json") and not _failed(p))
    if not found:
        raise SystemExit(f"{name}: no cell matches under {CELLS}")
    return found


def _failed(path: Path) -> bool:
    """A cell the bench stored as an error (re-run next time): said on stderr, left out of the comparison."""
    error = json.loads(path.read_text(encoding="utf-8")).get("error")
    if error:
        print(f"{path.name}: skipped, the run failed: {error}", file=sys.stderr)
    return bool(error)


def load(path: Path) -> tuple[str, dict[str, float]]:
    """A cell's label (method and model) and its per-query nDCG@10."""
    cell = json.loads(path.read_text(encoding="utf-8"))
    label = " ".join(x for x in (cell.get("method"), cell.get("model")) if x) or path.stem
    return label, {q: m["nDCG@10"] for q, m in cell["per_query_metrics"].items()}


def versus(base: dict[str, float], row: dict[str, float]) -> str:
    """``+0.0123 (p)`` over the queries both cells hold."""
    queries = [q for q in row if q in base]
    a, b = [base[q] for q in queries], [row[q] for q in queries]
    p = randomisation_test(a, b)
    return f"{(sum(b) - sum(a)) / len(queries):+.4f} ({'<0.001' if p < 0.001 else f'{p:.3f}'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="append", required=True)
    parser.add_argument("cells", nargs="+")
    args = parser.parse_args()
    for name in args.baseline:
        if len(matches(name)) != 1:
            raise SystemExit(f"--baseline {name}: {len(matches(name))} cells match (need exactly one)")
    baselines = [load(matches(b)[0]) for b in args.baseline]
    head = "| cell | queries | nDCG@10 | " + " | ".join(f"vs {label} (p)" for label, _ in baselines) + " |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for label, row in [load(path) for name in args.cells for path in matches(name)]:
        cells = ["" if label == name else versus(base, row) for name, base in baselines]
        print(f"| {label} | {len(row)} | {sum(row.values()) / len(row):.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
