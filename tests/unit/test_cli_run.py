"""`rankwise run PIPELINE.yaml`: a perfect judge in process, a tiny model through the real entry point,
SmolLM2 on DL19 (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rankwise import llm
from rankwise.cli import main
from rankwise.data import load_dataset, read_run
from rankwise.methods import registry
from rankwise.methods.pointwise import Pointwise
from tests.oracle import ideal_run, ndcg10, oracle_from_qrels


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rankwise.cli", "run", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture()
def judge_method(monkeypatch, dl19):
    """A method ``test.judge`` on an ``oracle`` backend that answers from the DL19 qrels (this process only)."""
    ds = load_dataset(str(dl19))
    requests = ds.requests("bm25", top_k=20)
    monkeypatch.setitem(llm.KINDS, "oracle", lambda model, **_: oracle_from_qrels(requests, ds.qrels))
    monkeypatch.setitem(registry._REGISTRY, "test.judge", registry.MethodInfo(
        "test.judge", lambda backend, **o: Pointwise(backend, "pointwise.yes_no", "yes_no", **o), "oracle", "judge"))
    return ds, requests


def test_run_a_pipeline_file_over_dl19(judge_method, tmp_path, capsys):
    ds, requests = judge_method
    spec = tmp_path / "judge.yaml"
    spec.write_text("pipeline:\n- first_stage: bm25\n  top_k: 20\n- rerank: test.judge\n  model: qrels\n  top_k: 10\n")
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    main(["run", str(spec), "--dataset", "dl19", "--output", str(out), "--usage", str(usage), "--max-queries", "3",
          "--no-cache"])
    run = read_run(out)
    qids = sorted(ds.judged_queries(), key=int)[:3]  # the first judged queries in qid order
    judged = [next(r for r in requests if r.query.qid == q) for q in qids]
    assert list(run) == qids and all(len(d) == 20 for d in run.values())
    head = [type(r)(r.query, r.candidates[:10]) for r in judged]
    assert ndcg10(run, judged, ds.qrels) == pytest.approx(ndcg10(ideal_run(head, ds.qrels), judged, ds.qrels))
    report = json.loads(usage.read_text())
    assert report["pipeline"] == "FirstStage('bm25') % 20 >> Rerank('test.judge', model='qrels') % 10"
    assert [(s["path"], s["calls"], s["queries"]) for s in report["stages"]] == [("1", 0, 3), ("2", 30, 3)]
    assert report["calls"] == 30 and report["queries"] == 3 and set(report["per_query"]) == set(run)
    assert "nDCG@10" in capsys.readouterr().err

    # --run gives a first stage to a pipeline that has none
    spec.write_text("pipeline:\n- rerank: test.judge\n  model: qrels\n  top_k: 10\n")
    main(["run", str(spec), "--dataset", "dl19", "--run", "bm25", "--output", str(out), "--overwrite",
          "--max-queries", "2"])
    assert [len(d) for d in read_run(out).values()] == [100, 100]


@pytest.mark.parametrize("text, args, message", [
    ("pipeline:\n- fuse: rrf\n  branches:\n  - first_stage: bm25\n  - first_stage: bm25\n"
     "- rerank: test.judge\n  model: qrels\n",
     ["--dataset", "dl19", "--run", "bm25"], "only a single first stage can be replaced by given candidates"),
    ("pipeline:\n- first_stage: bm25\n", [], "the pipeline retrieves (FirstStage('bm25')): give --dataset"),
    ("pipeline:\n- rerank: test.judge\n  model: qrels\n", [], "give --candidates FILE, or --dataset D with --run RUN"),
    ("pipeline:\n- rerank: test.judge\n  model: qrels\n  top_k: -1\n", [],
     "p.yaml: pipeline[0].top_k: expected a positive integer, got -1"),
])
def test_run_names_what_is_wrong(judge_method, tmp_path, capsys, text, args, message):
    spec, out = tmp_path / "p.yaml", tmp_path / "o.trec"
    spec.write_text(text)
    with pytest.raises(SystemExit) as caught:
        main(["run", str(spec), *args, "--output", str(out)])
    assert caught.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1






