"""The README's methods table and its figure, generated from the committed cells (no model runs).

    rankwise bench examples/bench-headline.yaml --output benchmarks/headline   # fills missing cells, resumable
    python benchmarks/headline.py                                              # README table + figure

Writes the tables between the ``<!-- headline:start -->`` and ``<!-- headline:end -->`` markers of README.md
and the figure to results/headline.png. A script rather than a ``rankwise bench`` option: the README is this
repository's, while ``rankwise.bench.headline`` builds the same table for any matrix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from rankwise.bench import BenchConfig
from rankwise.bench.headline import headline_figure, headline_markdown, headline_rows, replace_marked

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = Path("examples/bench-headline.yaml")
OUTPUT = Path("benchmarks/headline")
FIGURE = Path("benchmarks/results/headline.png")
PUBLISHED = Path("benchmarks/headline/published.yaml")
DATASETS = {"dl19": "DL19", "dl20": "DL20", "scifact": "SciFact"}


def published_markdown(path: Path = PUBLISHED) -> str:
    """The papers' own figures (one row per method and model) from ``path``, with where each was read."""
    rows: dict[tuple[str, str], dict] = {}
    for entry in yaml.safe_load((ROOT / path).read_text(encoding="utf-8")):
        row = rows.setdefault((entry["method"], entry["model"]), {"kinds": set()})
        row[entry["dataset"]] = entry["published"]
        row["kinds"].add(entry["source_kind"])
    lines = ["**Published, at the papers' model sizes** (not run here; mostly BM25 top-100; sources and caveats "
             f"in [{path.as_posix()}]({path.as_posix()}))", "",
             "| method | model | " + " | ".join(DATASETS.values()) + " | source |",
             "|---|---|" + "---|" * len(DATASETS) + "---|"]
    for (method, model), row in rows.items():
        figures = [f"{row[d]:.4f}" if d in row else "" for d in DATASETS]
        lines.append(f"| `{method}` | {model} | " + " | ".join(figures) + f" | {', '.join(sorted(row['kinds']))} |")
    return "\n".join(lines) + "\n"


def generate(config: Path = CONFIG, output: Path = OUTPUT, figure: Path | None = FIGURE) -> str:
    """The Markdown between the README's markers (and the figure, unless ``figure`` is None)."""
    rows = headline_rows(BenchConfig.from_file(ROOT / config), ROOT / output)
    body = headline_markdown(rows, f"rankwise bench {config} --output {output}")
    if figure is not None:
        headline_figure(rows, ROOT / figure)
    return (body + f"\n![nDCG@10 against seconds per query, 95% bootstrap intervals]({FIGURE.as_posix()})\n\n"
            + published_markdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    readme = ROOT / "README.md"
    readme.write_text(replace_marked(readme.read_text(encoding="utf-8"), generate(args.config, args.output)),
                      encoding="utf-8")
    print(f"wrote README.md and {FIGURE}")


if __name__ == "__main__":
    main()
