"""Causal-LM SFT and contrastive training (rankwise.train.sft, rankwise.train.targets): the training prompt
is the method's inference prompt, labels map to answer tokens, the losses, and a few real steps on a tiny
random model whose output directory then loads and reranks through the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankwise.errors import InputError
from rankwise.train.config import parse_config
from rankwise.train.groups import Group
from rankwise.train.sft import collate, contrastive_loss, sft_loss, train_sft
from rankwise.train.targets import choice_index, target_method, target_rows
from rankwise.types import Candidate, Query
from tests.tiny_lm import save_tiny_model, tiny_backend

WORDS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    """A tiny random causal LM directory and a tiny BEIR folder (12 queries over 4 topics)."""
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "tiny-lm"
    save_tiny_model(model)
    root = tmp_path / "beir"
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t, words in enumerate(WORDS):
        corpus += [{"_id": f"t{t}d{i}", "title": "", "text": f"{words} passage {i}"} for i in range(6)]
        queries += [{"_id": f"t{t}q{q}", "text": f"{words} {q}"} for q in range(3)]
        qrels += [f"t{t}q{q}\tt{t}d{q}\t{1 + q % 2}" for q in range(3)]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return model, root


def _group() -> Group:
    return Group("q1", "capital of france", ("p", "n1", "n2"), ("Paris is the capital", "bread", "bitcoin"),
                 (3.0, 1.0, 0.0), 1)


def test_labels_map_to_choices():
    assert [choice_index("yes_no", g, 2, 3, 2) for g in (3, 2, 1, 0)] == [0, 0, 1, 1]
    assert [choice_index("graded", g, 2, 3, 4) for g in (3, 2, 1, 0)] == [3, 2, 1, 0]
    assert choice_index("graded", 1, 1, 1, 4) == 3  # binary qrels (SciFact): relevant is the top grade


@pytest.mark.parametrize("target", ["pointwise.yes_no", "pointwise.graded"])
def test_training_prompts_are_the_methods_inference_prompts(target):
    backend = tiny_backend()
    method = target_method(target, backend, {"max_passage_tokens": 4})
    (row,) = target_rows(method, [_group()], threshold=2)
    group = _group()
    expected = method.prompts(Query(group.qid, group.query), [Candidate(d, t) for d, t in
                                                               zip(group.docids, group.texts)])
    assert [list(ids) for ids in row.input_ids] == [backend._tokenize(p) for p in expected]
    answer = [backend.tokenizer.decode([t]) for t in row.targets]
    assert answer == (["Yes", "No", "No"] if target == "pointwise.yes_no" else ["3", "1", "0"])


def test_only_pointwise_targets_train():
    with pytest.raises(InputError, match="sft.target"):
        parse_config({"kind": "sft", "sft": {"target": "listwise.window"}})
    with pytest.raises(InputError, match="log-odds"):
        parse_config({"kind": "contrastive", "sft": {"target": "pointwise.graded"}})


def test_losses():
    batch = {"targets": torch.tensor([1, 0]), "group_size": 2}
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    assert sft_loss(logits, batch) < 0.02
    # yes = token 0, no = token 1: the first passage (the positive) must out-score the second
    good = contrastive_loss(torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]), batch, [0], [1], 1.0)
    bad = contrastive_loss(torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]]), batch, [0], [1], 1.0)
    assert good < 0.01 and bad > 9


def test_collate_pads_right_and_marks_last_positions():
    from rankwise.train.targets import TargetRow

    batch = collate([TargetRow(((1, 2, 3), (4,)), (7, 8))], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["last"].tolist() == [2, 0] and batch["group_size"] == 2


@pytest.mark.parametrize("kind,target", [("sft", "pointwise.yes_no"), ("sft", "pointwise.graded"),
                                         ("contrastive", "pointwise.yes_no")])
def test_a_few_steps_on_a_tiny_model_write_a_model_that_reranks(tiny_setup, tmp_path, kind, target):
    from rankwise.pipeline import load_reranker

    model, data = tiny_setup
    config = parse_config({
        "kind": kind, "model": str(model), "sft": {"target": target, "lora_r": 4},
        "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1, "dev_fraction": 0.0,
                 "min_grade": 1, "seed": 1},
        "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1,
                     "save_steps": 2, "dtype": "float32"}})
    out = tmp_path / "sft"
    results = train_sft(config, out)
    assert results["steps"] == 3 and results["train_groups"] == 12 and results["sources"]["queries"]
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "checkpoints").is_dir()
    assert len(json.loads((out / "loss.json").read_text())) == 3
    assert set(json.loads((out / "train-queries.json").read_text())) == {f"t{t}q{q}" for t in range(4)
                                                                         for q in range(3)}
    reranker = load_reranker(target, str(out), cache=False)
    ranking = reranker.rank(Query("q", "bread yeast"), [Candidate("a", "bread yeast rises"), Candidate("b", "x")])
    assert {c.docid for c in ranking.candidates} == {"a", "b"}


def test_bf16_training_merges_the_adapter_into_fp32_weights(tiny_setup, tmp_path):
    from transformers import AutoModelForCausalLM

    model, data = tiny_setup
    config = parse_config({"kind": "sft", "model": str(model), "sft": {"lora_r": 4},
                           "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1,
                                    "dev_fraction": 0.0, "seed": 1},
                           "training": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-2,
                                        "warmup_ratio": 0.0, "dtype": "bfloat16",
                                        "gradient_checkpointing": True}})
    results = train_sft(config, tmp_path / "sft")
    assert results["bf16"] is True
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    base = AutoModelForCausalLM.from_pretrained(model)
    assert next(merged.parameters()).dtype == torch.float32
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)


def test_resume_continues_from_the_last_checkpoint(tiny_setup, tmp_path):
    model, data = tiny_setup
    values = {"kind": "sft", "model": str(model), "sft": {"lora_r": 4},
              "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1,
                       "dev_fraction": 0.0, "seed": 1},
              "training": {"max_steps": 2, "batch_size": 2, "logging_steps": 1, "save_steps": 2,
                           "dtype": "float32"}}
    out = tmp_path / "sft"
    train_sft(parse_config(values), out)
    values["training"]["max_steps"] = 3
    results = train_sft(parse_config(values), out, resume=True)
    assert results["resumed_from"].endswith("checkpoint-2") and results["steps"] == 3
    assert [r["step"] for r in json.loads((out / "loss.json").read_text())] == [1, 2, 3]


def test_held_out_datasets_are_never_trained_on(tiny_setup, tmp_path):
    from rankwise.train.groups import training_split

    _, data = tiny_setup
    config = parse_config({"kind": "sft", "data": {"dataset": str(data), "depth": 20, "group_size": 3,
                                                   "dev_fraction": 0.0, "held_out": [str(data)]}})
    with pytest.raises(InputError, match="no training groups"):
        training_split(config.data, 3)  # every query is also an evaluation query


@pytest.mark.slow
def test_sft_on_smollm2_for_two_steps(tmp_path):
    """The shipped example config, two steps on SmolLM2-135M (a minute on 2 shared cores)."""
    from rankwise.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "train-sft-pointwise-dl20.yaml")
    config.model = "smollm2-135m"
    config.training.max_steps, config.training.batch_size, config.training.max_minutes = 2, 1, None
    config.data.max_queries = 2
    results = train_sft(config, tmp_path / "sft")
    assert results["steps"] == 2 and (tmp_path / "sft" / "loss.png").is_file()
