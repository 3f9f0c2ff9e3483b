"""Pipelines as YAML/JSON files: round trips, the shipped examples, and errors naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.errors import InputError
from rankwise.methods import build_method
from rankwise.pipeline import (
    BM25,
    FirstStage,
    Fuse,
    Identity,
    Rerank,
    Stage,
    from_dict,
    load_pipeline,
    to_dict,
)
from tests.oracle import OracleBackend

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("pipeline-*.yaml"))

CASCADE = (FirstStage("bm25") % 100
           >> Rerank("pointwise.graded", model="smollm2-135m", backend_options={"batch_size": 8}) % 100
           >> Rerank("pointwise.yes_no", model="qwen2.5-0.5b", engine="transformers", dtype="float32",
                     max_passage_tokens=128) % 30
           >> Rerank("setwise.heapsort", model="qwen2.5-0.5b", k=10) % 10)
FUSED = (Fuse(FirstStage("bm25"), BM25(k1=1.2, b=0.75) % 50, method="interpolate", weights=[0.4, 0.6],
              norm="zscore") % 100
         >> Fuse(Rerank("pointwise.yes_no", model="m") % 20 >> Rerank("pairwise.heapsort", model="m"),
                 (Rerank("pointwise.graded", model="m") >> Rerank("pointwise.qlm", model="m")) % 10, k=10) % 40)


INTERPOLATED = (Rerank("embedding.e2rank", model="minilm-l6") % 100
                >> Fuse(Identity(), Rerank("pointwise.yes_no", model="m"), method="interpolate", weights=[0.5, 0.5]) % 30)


@pytest.mark.parametrize("pipeline", [CASCADE, FUSED, INTERPOLATED, Rerank("pointwise.yes_no", model="m") % 5,
                                      (Rerank("pointwise.yes_no", model="m") >> Rerank("pointwise.graded",
                                                                                       model="m")) % 7])
def test_round_trip_through_dict_yaml_and_json(pipeline, tmp_path):
    assert from_dict(to_dict(pipeline)) == pipeline
    text = pipeline.to_yaml(tmp_path / "p.yaml")
    assert (tmp_path / "p.yaml").read_text() == text
    assert Stage.from_yaml(tmp_path / "p.yaml") == pipeline
    (tmp_path / "p.json").write_text(json.dumps(pipeline.to_dict()))
    assert load_pipeline(tmp_path / "p.json") == pipeline


def test_the_file_reads_as_the_pipeline_does():
    assert CASCADE.to_yaml().splitlines()[:8] == [
        "pipeline:", "- first_stage: bm25", "  top_k: 100", "- rerank: pointwise.graded", "  model: smollm2-135m",
        "  top_k: 100", "  backend_options:", "    batch_size: 8"]
    assert to_dict(Fuse(FirstStage("a"), FirstStage("b")))["pipeline"][0] == \
        {"fuse": "rrf", "branches": [[{"first_stage": "a"}], [{"first_stage": "b"}]]}


def test_identity_is_written_as_a_flag():
    assert to_dict(INTERPOLATED)["pipeline"][1]["branches"][0] == [{"identity": True}]
    with pytest.raises(InputError, match=r"pipeline\[0\]\.identity: expected true"):
        from_dict({"pipeline": [{"identity": "yes"}]})


def test_a_branch_may_be_one_stage_mapping():
    data = {"pipeline": [{"fuse": "rrf", "branches": [{"first_stage": "a"}, [{"first_stage": "b"}]], "top_k": 5}]}
    assert from_dict(data) == Fuse(FirstStage("a"), FirstStage("b")) % 5


def test_a_reranker_built_by_hand_cannot_be_saved():
    with pytest.raises(InputError, match="only a reranker loaded by name"):
        to_dict(build_method("pointwise.yes_no", OracleBackend({})))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_examples_load_and_round_trip(path):
    pipeline = load_pipeline(path)
    assert from_dict(pipeline.to_dict()) == pipeline


@pytest.mark.parametrize("text, message", [
    ("pipeline: [\n  {rerank: x\n", r"p.yaml:3: not valid YAML"),
    ("- rerank: pointwise.yes_no\n", "p.yaml: pipeline file: expected a mapping with a 'pipeline' list"),
    ("pipeline: []\n", "p.yaml: pipeline: expected a non-empty list of stages"),
    ("pipeline:\n- rerank: pointwise.yes_no\n", r"p.yaml: pipeline\[0\].model: expected a model name, got None"),
    ("pipeline:\n- first_stage: bm25\n- rerank: pointwise.nope\n  model: m\n",
     r"p.yaml: pipeline\[1\].rerank: unknown method 'pointwise.nope' \(did you mean"),
    ("pipeline:\n- rerank: pointwise.yes_no\n  model: m\n  top_k: ten\n",
     r"pipeline\[0\].top_k: expected a positive integer, got 'ten'"),
    ("pipeline:\n- rerank: pointwise.yes_no\n  model: m\n  topk: 10\n",
     r"pipeline\[0\].topk: unknown field for a rerank stage \(allowed: backend_options, dtype, engine, model"),
    ("pipeline:\n- {rerank: pointwise.yes_no, first_stage: bm25, model: m}\n",
     r"pipeline\[0\]: expected exactly one of"),
    ("pipeline:\n- rerank: pointwise.yes_no\n  model: m\n- first_stage: bm25\n",
     r"pipeline\[1\]: FirstStage\('bm25'\) retrieves candidates: it can only start a pipeline"),
    ("pipeline:\n- fuse: rrf\n  branches: [[{first_stage: a}], [{retrieve: bm26}]]\n",
     r"pipeline\[0\].branches\[1\]\[0\].retrieve: expected one of bm25, got 'bm26'"),
    ("pipeline:\n- fuse: borda\n  branches: [{first_stage: a}, {first_stage: b}]\n",
     r"pipeline\[0\].fuse: unknown fusion method 'borda'"),
    ("pipeline:\n- fuse: rrf\n  weights: [1]\n  branches: [{first_stage: a}, {first_stage: b}]\n",
     r"pipeline\[0\].fuse: 1 weights for 2 ranked lists"),
    ("pipeline:\n- rerank: pointwise.yes_no\n  model: m\n  options: {top_k: 3}\n",
     r"pipeline\[0\].options: top_k belong to the stage"),
    ("pipeline:\n- first_stage: bm25\nsteps: 3\n", "p.yaml: steps: unknown top-level field"),
])
def test_a_bad_file_names_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        load_pipeline(path)
    assert caught.value.path == str(path)


def test_bad_json_and_a_missing_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"pipeline": [\n}')
    with pytest.raises(InputError, match=r"p.json:2: not valid JSON"):
        load_pipeline(path)
    with pytest.raises(InputError, match="nope.yaml: no such pipeline file"):
        load_pipeline(tmp_path / "nope.yaml")
