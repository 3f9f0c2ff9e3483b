"""Rerank TREC DL19 / DL20 with each profiled reranker and put rankwise's nDCG@10 beside the published one.

    python benchmarks/reproduce.py --dry-run                     # the commands, nothing run
    python benchmarks/reproduce.py --only monot5,rankt5 --datasets dl19 --output results.md
    python benchmarks/reproduce.py --write-docs                  # docs/reproduce.md's table from the rows

The rows (profile, model, method, arguments, published figure and its source) are benchmarks/reproduce.yaml,
the only list: docs/reproduce.md's table is generated from it. Each row runs as the `rankwise rerank` command
the docs show, in a subprocess, with ``--usage`` (rankwise writes nDCG@10 there). A row whose model is not on
this machine (a hub model missing from the local hub cache, a directory that does not exist) or whose dataset
is not found is not run, and the table says why. The runs need a GPU and the models: see docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TABLE = HERE / "reproduce.yaml"
DOCS = ROOT / "docs" / "reproduce.md"
DATASETS = ("dl19", "dl20")
TOP_K = 100
_FIELDS = {"profile", "model", "shown", "method", "args", "tag", "published", "source"}


@dataclass(frozen=True)
class Row:
    """One profiled reranker: what to run and the figure to compare with."""

    profile: str
    model: str
    method: str
    tag: str
    source: str
    args: tuple[str, ...] = ()
    published: dict[str, float] = field(default_factory=dict)
    shown: str | None = None  # the model column's text, where the model is a placeholder path

    def command(self, dataset: str, out_dir: str = ".") -> list[str]:
        """The ``rankwise rerank`` arguments of this row on ``dataset`` (its run written in ``out_dir``)."""
        run = f"{out_dir.rstrip('/')}/{Path(dataset).name}.{self.tag}.trec".removeprefix("./")
        return ["rankwise", "rerank", "--dataset", dataset, "--run", "bm25", "--top-k", str(TOP_K),
                "--method", self.method, "--model", self.model, *self.args, "--output", run]

    def published_text(self) -> str:
        """The docs' published column: the figures (where there are) and their source."""
        if not self.published:
            return self.source
        if len(self.published) == 1:
            (dataset, value), = self.published.items()
            return f"{value:.4f} on {dataset.upper()} ({self.source})"
        return " / ".join(f"{self.published[d]:.4f}" for d in DATASETS) + f" ({self.source})"


def load_rows(path: Path = TABLE) -> list[Row]:
    """The rows of the table file; an unknown or missing field is a ValueError naming the row."""
    rows = []
    for i, data in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))["rows"]):
        unknown, missing = set(data) - _FIELDS, {"profile", "model", "method", "tag", "source"} - set(data)
        if unknown or missing:
            raise ValueError(f"{path}: row {i + 1}: unknown {sorted(unknown)}, missing {sorted(missing)}")
        rows.append(Row(**{**data, "args": tuple(str(a) for a in data.get("args", ())),
                           "published": dict(data.get("published") or {})}))
    return rows


def docs_table(rows: list[Row]) -> str:
    """docs/reproduce.md's table: profile, model, the DL19 command (DL20: the same with dl20), published."""
    lines = ["| profile | hub model | rankwise command (`--dataset dl19`, then `dl20`) | published DL19 / DL20 |",
             "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.profile} | {row.shown or f'`{row.model}`'} | `{' '.join(row.command('dl19'))}` | "
                     f"{row.published_text()} |")
    return "\n".join(lines)


def not_run_reason(row: Row, dataset: str) -> str | None:
    """Why ``row`` cannot run on ``dataset`` here (its model or dataset is not on this machine), else None."""
    from rankwise.data.dataset import resolve_local
    from rankwise.errors import ModelError
    from rankwise.llm.models import hub_snapshot, resolve_model

    try:
        resolved = resolve_model(row.model)
    except ModelError as exc:
        return f"not run here: {exc}"
    if resolved.hub_id is not None and hub_snapshot(resolved.hub_id) is None:
        return f"not run here: {resolved.hub_id} is not in the local hub cache (no hub access)"
    if resolve_local(dataset) is None:
        return f"not run here: dataset {dataset} not found (set RANKWISE_DATA)"
    return None


def run_row(row: Row, dataset: str, out_dir: Path) -> float | str:
    """nDCG@10 of the row's command on ``dataset`` (run in a subprocess), or why there is none."""
    reason = not_run_reason(row, dataset)
    if reason is not None:
        return reason
    out_dir.mkdir(parents=True, exist_ok=True)
    usage = out_dir / f"{Path(dataset).name}.{row.tag}.usage.json"
    args = row.command(dataset, str(out_dir))[1:] + ["--usage", str(usage), "--overwrite"]
    done = subprocess.run([sys.executable, "-m", "rankwise.cli", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed (exit {done.returncode}): {last}"
    effectiveness = json.loads(usage.read_text()).get("effectiveness") or {}
    return effectiveness.get("nDCG@10", "no nDCG@10: the dataset has no qrels")


def comparison_table(results: list[tuple[Row, str, float | str]]) -> str:
    """Markdown: profile, model, dataset, rankwise nDCG@10 (or why not run), published figure, difference."""
    lines = ["| profile | model | dataset | rankwise nDCG@10 | published | difference |",
             "|---|---|---|---:|---:|---:|"]
    for row, dataset, ours in results:
        theirs = row.published.get(dataset)
        shown = f"{ours:.4f}" if isinstance(ours, float) else ours
        paper = f"{theirs:.4f}" if theirs is not None else "-"
        diff = f"{ours - theirs:+.4f}" if isinstance(ours, float) and theirs is not None else "-"
        lines.append(f"| {row.profile} | `{row.model}` | {dataset} | {shown} | {paper} | {diff} |")
    return "\n".join(lines)


def write_docs(rows: list[Row], docs: Path = DOCS) -> None:
    """Regenerate the table between the ``reproduce`` markers of docs/reproduce.md."""
    from rankwise.bench.headline import replace_marked

    text = replace_marked(docs.read_text(encoding="utf-8"), docs_table(rows), "reproduce")
    docs.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated profile names (default: every row)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated datasets (dl19,dl20)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--table", type=Path, default=TABLE, help="the rows (default benchmarks/reproduce.yaml)")
    parser.add_argument("--runs", type=Path, default=Path("reproduce-runs"), help="where runs and usage go")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument("--write-docs", action="store_true", help="regenerate docs/reproduce.md's table, run nothing")
    args = parser.parse_args(argv)
    rows = load_rows(args.table)
    if args.write_docs:
        write_docs(rows)
        print(f"wrote {DOCS.relative_to(ROOT)}")
        return
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {r.profile for r in rows})
        if unknown:
            parser.error(f"no row for {', '.join(unknown)} (rows: {', '.join(r.profile for r in rows)})")
        rows = [r for r in rows if r.profile in wanted]
    datasets = args.datasets.split(",")
    if args.dry_run:
        for row in rows:
            for dataset in datasets:
                print(" ".join(row.command(dataset, str(args.runs))))
        return
    results = []
    for row in rows:
        for dataset in datasets:
            results.append((row, dataset, run_row(row, dataset, args.runs)))
            print(f"{row.profile} {dataset}: {results[-1][2]}", file=sys.stderr)
    table = comparison_table(results)
    print(table)
    if args.output is not None:
        args.output.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
