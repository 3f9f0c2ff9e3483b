"""Capacity table: how long each measured method would take on big query sets, on N workers.

    python benchmarks/capacity.py                          # every measurement under benchmarks/out/
    python benchmarks/capacity.py --usage run.json ...     # plus usage JSONs of `rankwise rerank --usage`
    python benchmarks/capacity.py --workers 1 8 64 --throughput "GPU (measured)=25000"

For each measured (method, model, dtype, top-k, threads): tokens per query (computed by the model, plus
generated) and the measured throughput of one worker (those tokens / wall seconds, this CPU). Hours =
queries x tokens/query / (tokens/s x workers) for MS MARCO dev (6,980 queries), the 18 BEIR test sets and
500k training queries. ``--throughput LABEL=TOKENS_PER_S`` adds rows that divide the same token counts by
another engine's throughput (e.g. a GPU figure). Scaling is taken as linear in workers (Ray overhead:
benchmarks/results/ray_overhead.md). Writes benchmarks/results/capacity.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

MSMARCO_DEV = 6980
TRAINING = 500_000
# BEIR test-query counts from the BEIR paper (Thakur et al., NeurIPS 2021 Datasets track, Table 1); the ones
# whose topics are in ../shared/data are counted from the files instead (and must agree).
BEIR_PAPER = {
    "trec-covid": 50, "bioasq": 500, "nfcorpus": 323, "nq": 3452, "hotpotqa": 7405, "fiqa": 648,
    "signal1m": 97, "trec-news": 57, "robust04": 249, "arguana": 1406, "webis-touche2020": 49,
    "cqadupstack": 13145, "quora": 10000, "dbpedia-entity": 400, "scidocs": 1000, "fever": 6666,
    "climate-fever": 1535, "scifact": 300,
}


@dataclass(frozen=True)
class Measurement:
    """Totals over the measured queries of one setup (pooled over datasets and repeated runs)."""

    method: str
    prompt: str
    model: str
    dtype: str
    top_k: int
    threads: str
    queries: int
    tokens: float  # computed + generated: what the engine actually ran
    prompt_tokens: float
    seconds: float  # wall seconds
    sources: tuple[str, ...]

    @property
    def key(self) -> tuple:
        return self.method, self.prompt, self.model, self.dtype, self.top_k, self.threads

    @property
    def tokens_per_query(self) -> float:
        return self.tokens / self.queries

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def __add__(self, other: "Measurement") -> "Measurement":
        return Measurement(*self.key, self.queries + other.queries, self.tokens + other.tokens,
                           self.prompt_tokens + other.prompt_tokens, self.seconds + other.seconds,
                           self.sources + other.sources)


def beir_counts(data: Path = DATA) -> dict[str, tuple[int, str]]:
    """Test queries per BEIR dataset: counted from ../shared/data where present, else the paper's figure."""
    counts = {name: (n, "BEIR paper") for name, n in BEIR_PAPER.items()}
    for path in sorted((data / "beir-topics-qrels").glob("topics.beir-v1.0.0-*.test.tsv.gz")):
        name = path.name.removeprefix("topics.beir-v1.0.0-").removesuffix(".test.tsv.gz")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            counts[name] = (sum(1 for line in f if line.strip()), "counted")
    scifact = data / "beir-scifact" / "qrels" / "test.tsv"
    if scifact.is_file():
        with scifact.open(encoding="utf-8") as f:
            counts["scifact"] = (len({row[0] for row in list(csv.reader(f, delimiter="\t"))[1:]}), "counted")
    for name, (n, how) in counts.items():
        if how == "counted" and name in BEIR_PAPER and n != BEIR_PAPER[name]:
            print(f"warning: {name}: {n} test queries here, {BEIR_PAPER[name]} in the BEIR paper", file=sys.stderr)
    return counts


def _from_usage(path: Path, data: dict) -> Measurement:
    """A usage JSON of `rankwise rerank --usage` (totals, ``queries``, ``wall_seconds``)."""
    threads = data.get("threads") or (f"{data['workers']} workers" if data.get("executor") == "ray" else "all")
    return Measurement(data.get("method", "?"), data.get("prompt", "default"), data.get("model", "?"),
                       data.get("dtype", "?"), int(data.get("top_k", 0)), str(threads), data["queries"],
                       data["computed_tokens"] + data["completion_tokens"], data["prompt_tokens"],
                       data["wall_seconds"], (path.name,))


def _from_benchmark(path: Path, data: dict) -> Measurement:
    """A benchmark output of benchmarks/pointwise.py (``per_query`` means) or comparison_methods.py
    (per-query means at the top level)."""
    per_query = data["per_query"] if isinstance(data.get("per_query"), dict) and "seconds" in data["per_query"] \
        else data
    method = data.get("method", "?")
    if data.get("toolkit"):
        method = f"{method} ({data['toolkit']})"
    q = int(data["queries"])
    tokens = per_query["computed_tokens"] + per_query.get("completion_tokens", 0)
    return Measurement(method, data.get("prompt", "default"), data["model"], data["dtype"], int(data["top_k"]),
                       str(data.get("threads", "all")), q, tokens * q, per_query["prompt_tokens"] * q,
                       per_query["seconds"] * q, (path.name,))


def load_measurements(paths: list[Path]) -> list[Measurement]:
    """Every file that carries token counts and seconds, pooled per setup (method, prompt, model, dtype,
    top-k, threads); files without token counts (e.g. llm-rankers timings) are skipped."""
    pooled: dict[tuple, Measurement] = {}
    for path in paths:
        data = json.loads(path.read_text())
        try:
            m = _from_usage(path, data) if "wall_seconds" in data else _from_benchmark(path, data)
        except (KeyError, TypeError, ValueError):
            continue
        if m.queries and m.seconds:
            pooled[m.key] = pooled[m.key] + m if m.key in pooled else m
    return sorted(pooled.values(), key=lambda m: m.key)


def _hours(queries: int, tokens_per_query: float, tokens_per_s: float, workers: int) -> str:
    hours = queries * tokens_per_query / tokens_per_s / workers / 3600
    return f"{hours:,.1f}" if hours >= 1 else f"{hours:.2f}"


def table(measurements: list[Measurement], workloads: dict[str, int], workers: list[int],
          throughputs: dict[str, float]) -> list[str]:
    header = ["method", "prompt", "model", "dtype", "top-k", "threads", "queries", "tokens/query", "engine",
              "tokens/s per worker"]
    header += [f"h {name}, {n} w" for name in workloads for n in workers]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in measurements:
        engines = {"this CPU (measured)": m.tokens_per_s, **throughputs}
        for engine, speed in engines.items():
            row = [m.method, m.prompt, m.model, m.dtype, str(m.top_k), m.threads, str(m.queries),
                   f"{m.tokens_per_query:,.0f}", engine, f"{speed:,.0f}"]
            row += [_hours(q, m.tokens_per_query, speed, n) for q in workloads.values() for n in workers]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=HERE / "out", help="benchmark outputs (JSON) to read")
    ap.add_argument("--usage", type=Path, nargs="*", default=[], help="usage JSONs of `rankwise rerank --usage`")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--throughput", action="append", default=[], metavar="LABEL=TOKENS_PER_S",
                    help="another engine's tokens/s per worker (e.g. a GPU), applied to every method")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "capacity.md")
    args = ap.parse_args()

    throughputs = {}
    for spec in args.throughput:
        label, _, value = spec.rpartition("=")
        throughputs[label] = float(value)
    measurements = load_measurements(sorted(args.out_dir.rglob("*.json")) + list(args.usage))
    if not measurements:
        sys.exit(f"no measurements with token counts under {args.out_dir} or in --usage")
    beir = beir_counts()
    counted = {k: n for k, (n, how) in beir.items() if how == "counted"}
    paper = {k: n for k, (n, how) in beir.items() if how != "counted"}
    workloads = {"MS MARCO dev": MSMARCO_DEV, "BEIR-18": sum(n for n, _ in beir.values()), "500k train": TRAINING}
    sources = sorted(args.out_dir.rglob("*.json")) + list(args.usage)
    cpus = sorted({str(json.loads(p.read_text()).get("cpu")) for p in sources} - {"None"})

    lines = [
        "# Capacity: hours to rerank big query sets",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`".rstrip() + "",
        f"CPU of the measurements: {', '.join(cpus) or '?'}. Hours assume workers scale linearly (Ray's own "
        "overhead: benchmarks/results/ray_overhead.md). Setups are pooled over datasets (DL19, DL20) and runs.",
        "",
        f"Query counts: MS MARCO dev {MSMARCO_DEV:,}; BEIR-18 {workloads['BEIR-18']:,} test queries "
        f"({len(counted)} datasets counted from ../shared/data: "
        + ", ".join(f"{k} {n}" for k, n in sorted(counted.items()))
        + f"; {len(paper)} from the BEIR paper, Table 1: "
        + ", ".join(f"{k} {n}" for k, n in sorted(paper.items()))
        + f"); training {TRAINING:,} queries.",
        "",
        "tokens/query: tokens the engine computed (after prefix reuse; prompt tokens are more) plus generated "
        "ones; tokens/s: those per wall second of one worker with the given threads (all: the machine's). "
        "Pointwise cost grows linearly with top-k; sorting methods about as k log k.",
        "",
        *table(measurements, workloads, args.workers, throughputs),
        "",
        "Sources: " + ", ".join(sorted({name for m in measurements for name in m.sources})),
        "",
    ]
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
