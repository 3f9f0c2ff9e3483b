"""The full benchmark matrix (every method, both qwen2.5 models, DL19 + DL20 + SciFact) and BENCHMARKS.md, in one command.

    python benchmarks/matrix.py [--config examples/bench-matrix.yaml] [--output benchmarks/out/matrix]
    python benchmarks/matrix.py --config examples/bench-adversarial.yaml --output benchmarks/out/adversarial \
        --name bench_adversarial

Runs ``rankwise bench CONFIG --output DIR`` (resumable: finished cells are kept and not run again),
copies its table and plot to results/NAME.md / .png (the notes section of the old file
kept; failed cells appear as such), then rebuilds BENCHMARKS.md with assemble.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common import write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("examples/bench-matrix.yaml"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/matrix"))
    parser.add_argument("--name", default="bench_matrix", help="results/NAME.md and results/NAME.png")
    args = parser.parse_args()
    done = subprocess.run([sys.executable, "-m", "rankwise.cli", "bench", str(args.config), "--output",
                           str(args.output)], cwd=ROOT, stdout=subprocess.DEVNULL)
    output = args.output if args.output.is_absolute() else ROOT / args.output
    if done.returncode not in (0, 1) or not (output / "results.md").exists():  # 1: some cells failed, shown
        sys.exit(done.returncode)
    results = HERE / "results"
    shutil.copyfile(output / "plot.png", results / f"{args.name}.png")
    table = (output / "results.md").read_text(encoding="utf-8")
    image = (f"\n![nDCG@10 against seconds and prompt tokens per query, Pareto front dashed]"
             f"(benchmarks/results/{args.name}.png)\n")
    write_report(results / f"{args.name}.md", lambda: table + image)
    subprocess.run([sys.executable, str(HERE / "assemble.py")], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
