"""benchmarks/reproduce.py end to end: a row on a tiny random monoT5 directory over a tiny dataset runs through
the `rankwise rerank` command in a subprocess, and its nDCG@10 lands in the side-by-side table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rankwise.data import write_candidates_jsonl
from rankwise.types import Candidate, Query, Request
from tests.tiny_seq2seq import save_tiny_t5

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_row_runs_and_its_ndcg_is_tabled(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmarks_reproduce", ROOT / "benchmarks" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = reproduce
    spec.loader.exec_module(reproduce)
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "tiny-monot5"
    save_tiny_t5(model)
    data = tmp_path / "tiny-dl"
    data.mkdir()
    (data / "topics.tsv").write_text("q1\thow do plants make food\nq2\tcapital of France\n")
    (data / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d4 1\n")
    texts = ["Plants make food from light", "bitcoin mining", "yeast", "Paris is the capital"]
    write_candidates_jsonl([Request(Query(q, t), tuple(Candidate(f"d{i + 1}", x) for i, x in enumerate(texts)))
                            for q, t in (("q1", "how do plants make food"), ("q2", "capital of France"))],
                           data / "retrieve_results.bm25.jsonl")
    table = tmp_path / "reproduce.yaml"
    table.write_text(f"rows:\n  - {{profile: monot5, model: {model}, method: pointwise.yes_no, tag: tiny, "
                     "source: none}\n")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src") + ":" + str(ROOT))
    reproduce.main(["--table", str(table), "--datasets", str(data), "--runs", str(tmp_path / "runs"),
                    "--output", str(tmp_path / "out.md")])
    line = (tmp_path / "out.md").read_text().splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["monot5", f"`{model}`", str(data)] and 0.0 < float(cells[3]) <= 1.0, line
    assert (tmp_path / "runs" / "tiny-dl.tiny.trec").is_file()
