"""`rankwise run` through the real entry point on a tiny model and on SmolLM2."""


from __future__ import annotations

import json

import pytest

from rankwise.data import read_run, write_candidates_jsonl
from rankwise.types import Candidate, Query, Request
from unit.test_cli_run import _run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.tiny_lm import save_tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(path)
    return path


@pytest.mark.slow  # two processes that each import transformers: ~15 s on 2 busy cores
def test_run_through_the_entry_point_on_a_tiny_model(model_dir, tmp_path):
    requests = [Request(Query(f"q{q}", f"the capital of France {q}"),
                        tuple(Candidate(f"d{q}-{i}", f"Paris is the capital {i}", score=10.0 - i) for i in range(6)))
                for q in range(2)]
    cands = tmp_path / "cands.jsonl"
    write_candidates_jsonl(requests, cands)
    spec = tmp_path / "tiny.yaml"
    stage = f"  model: {model_dir}\n  engine: transformers\n  dtype: float32\n"
    spec.write_text(f"pipeline:\n- rerank: pointwise.yes_no\n{stage}  top_k: 4\n"
                    f"- rerank: pointwise.graded\n{stage}  top_k: 2\n")
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    done = _run(str(spec), "--candidates", str(cands), "--output", str(out), "--usage", str(usage), "--no-cache")
    assert done.returncode == 0, done.stderr
    run = read_run(out)
    assert {q: len(d) for q, d in run.items()} == {"q0": 6, "q1": 6}
    assert list(run["q0"])[4:] == ["d0-4", "d0-5"]  # past the first stage's top 4: first-stage order
    report = json.loads(usage.read_text())
    assert [s["calls"] for s in report["stages"]] == [8, 4] and report["calls"] == 12
    assert report["stages"][0]["engine"] == "transformers" and report["stages"][0]["load_seconds"] > 0

    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n- rerank: pointwise.yes_no\n  model: m\n  top_k: -1\n")
    done = _run(str(bad), "--candidates", str(cands), "--output", str(tmp_path / "x.trec"))
    assert done.returncode == 2 and not (tmp_path / "x.trec").exists()
    assert done.stderr.strip() == f"error: {bad}: pipeline[0].top_k: expected a positive integer, got -1"
    done = _run(str(spec), "--candidates", str(cands), "--output", str(out))
    assert done.returncode == 2 and "already exists" in done.stderr


@pytest.mark.slow
def test_smollm2_cascade_on_dl19(tmp_path):
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    spec = tmp_path / "cascade.yaml"
    spec.write_text("pipeline:\n- first_stage: bm25\n  top_k: 10\n"
                    "- rerank: pointwise.yes_no\n  model: smollm2-135m\n  top_k: 10\n"
                    "  options: {max_passage_tokens: 64}\n"
                    "- rerank: pairwise.heapsort\n  model: smollm2-135m\n  top_k: 4\n"
                    "  options: {k: 2, max_passage_tokens: 64}\n")
    done = _run(str(spec), "--dataset", "dl19", "--max-queries", "1", "--output", str(out), "--usage", str(usage),
                "--no-cache")
    assert done.returncode == 0, done.stderr
    assert "nDCG@10" in done.stderr and len(next(iter(read_run(out).values()))) == 10
    stages = json.loads(usage.read_text())["stages"]
    assert [s["calls"] for s in stages][:2] == [0, 10] and stages[2]["calls"] > 0
    assert stages[1]["model"] == stages[2]["model"] == "smollm2-135m"
