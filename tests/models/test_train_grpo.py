"""GRPO glue (rankwise.train.grpo): the training prompts ARE the method's prompts (rendered by
groupwise.generate itself, equal character for character to the ones the trained directory reranks with),
the TRL dataset, and real GRPOTrainer steps on a tiny random model whose output loads and reranks through
the method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankwise.pipeline import run
from rankwise.train.config import GrpoConfig, parse_config
from rankwise.train.groups import Group
from rankwise.train.grpo import (METHOD, grpo_dataset, load_trained, method_options, moving_average,
                                 train_grpo, training_method, training_text)
from rankwise.types import Candidate, Query, Request
from tests.tiny_lm import save_tiny_model, tiny_model, tiny_tokenizer

WORDS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]
GRADES = {"POS": 3.0, "NEG1": 0.0, "NEG2": 1.0, "NEG3": 0.0}


def _groups(n: int = 8) -> list[Group]:
    return [Group(f"q{i}", f"query {i}", ("p", "n1", "n2", "n3"), ("POS", "NEG1", "NEG2", "NEG3"),
                  (3.0, 0.0, 1.0, 0.0), 1) for i in range(n)]


def _rows(config: GrpoConfig, seed: int = 1):
    tok = tiny_tokenizer()
    method = training_method(tiny_model(len(tok)), tok, "tiny", config)
    return grpo_dataset(_groups(), method, tok, seed), tok


def test_grpo_rows_shuffle_passages_with_their_labels():
    rows, _ = _rows(GrpoConfig(group_size=4))
    firsts = set()
    for row in rows:
        text = row["prompt"]
        assert text.endswith("<|im_start|>assistant\n[") and row["answer_prefix"] == "["  # the turn is left open
        order = sorted(GRADES, key=text.index)
        assert row["labels"] == [GRADES[name] for name in order]
        firsts.add(order[0])
    assert len(firsts) > 1  # the positive is not always first


def test_training_prompts_equal_the_prompts_of_the_trained_directory(tmp_path):
    """Character for character (passages cut by the method alike), and token for token as TRL and the
    engine tokenize them."""
    config = GrpoConfig(group_size=4, max_passage_tokens=3)
    texts = tuple(f"{i} {w} and more words" for i, w in enumerate(WORDS))
    groups = [Group(f"q{i}", f"query {i}", ("a", "b", "c", "d"), texts, (3.0, 0.0, 1.0, 0.0), 1) for i in range(6)]
    tok = tiny_tokenizer()
    rows = grpo_dataset(groups, training_method(tiny_model(len(tok)), tok, "tiny", config), tok, seed=2)
    save_tiny_model(tmp_path / "tiny")
    reranker = load_trained(tmp_path / "tiny", config)  # what evaluation and `rankwise rerank` load
    cut = {t: reranker.backend.truncate(t, 3) for t in texts}
    assert all(cut[t] != t and cut[t] in rows[0]["prompt"] and t not in rows[0]["prompt"] for t in texts)
    for row, group in zip(rows, groups):
        shown = sorted(group.texts, key=lambda t: row["prompt"].index(cut[t]))
        assert row["prompt"] == reranker.prompt(group.query, shown)
        assert tok(row["prompt"])["input_ids"] == reranker.backend.tokenizer(
            reranker.prompt(group.query, shown), add_special_tokens=False)["input_ids"]


class _BosTokenizer:
    """A tokenizer that adds its BOS token itself (as Llama's do)."""

    bos_token, bos_token_id = "<s>", 1

    def __call__(self, text: str) -> dict:
        return {"input_ids": [1] + [ord(c) for c in text]}


def test_a_bos_the_tokenizer_adds_again_is_dropped_from_the_training_text():
    assert training_text("<s>user: q", _BosTokenizer()) == "user: q"
    assert training_text("user: q", _BosTokenizer()) == "user: q"
    assert training_text("<s>user: q", tiny_tokenizer()) == "<s>user: q"  # adds no BOS: kept as it is


def test_the_method_options_are_the_configs():
    g = GrpoConfig(prompt="groupwise.json", group_size=3, max_passage_tokens=20, answer_prefix="[")
    assert method_options(g) == {"prompt": "groupwise.json", "group_size": 3, "max_passage_tokens": 20,
                                 "answer_prefix": "["}
    assert METHOD == "groupwise.generate"


def test_moving_average():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_grpo_step_on_a_tiny_model_writes_adapter_merged_model_and_rewards(tiny_setup, tmp_path, dtype):
    """bfloat16 trains on bf16 base weights and merges the adapter into fp32 ones."""
    from transformers import AutoModelForCausalLM

    model, data = tiny_setup
    config = parse_config({
        "kind": "grpo", "model": str(model),
        "data": {"dataset": str(data), "depth": 20, "groups_per_query": 1, "dev_fraction": 0.0, "seed": 1},
        "grpo": {"group_size": 3, "num_generations": 2, "max_completion_length": 4, "max_passage_tokens": 8},
        "training": {"max_steps": 1, "batch_size": 1, "dtype": dtype, "save_steps": 10}})
    out = tmp_path / "grpo"
    results = train_grpo(config, out)
    assert results["steps"] == 1 and (out / "adapter" / "adapter_config.json").is_file()
    assert results["bf16"] is (dtype == "bfloat16")
    merged = AutoModelForCausalLM.from_pretrained(out)  # the merged model: a plain transformers directory
    assert next(merged.parameters()).dtype == torch.float32
    rows = json.loads((out / "rewards.json").read_text())
    assert len(rows) == 1 and {"reward", "reward_std", "rewards/format_reward/mean"} <= set(rows[0])
    assert -1.0 <= rows[0]["rewards/format_reward/mean"] <= 1.0
    assert results["method"] == METHOD and results["method_options"] == method_options(config.grpo)


def test_the_trained_directory_reranks_through_the_method(tiny_setup, tmp_path):
    """Two GRPO steps, then the output loads as groupwise.generate and reranks through pipeline.run."""
    model, data = tiny_setup
    config = parse_config({
        "kind": "grpo", "model": str(model),
        "data": {"dataset": str(data), "depth": 20, "groups_per_query": 1, "dev_fraction": 0.0, "seed": 1},
        "grpo": {"group_size": 3, "num_generations": 2, "max_completion_length": 4, "max_passage_tokens": 8},
        "training": {"max_steps": 2, "batch_size": 1, "dtype": "float32", "save_steps": 10}})
    out = tmp_path / "grpo"
    assert train_grpo(config, out)["steps"] == 2
    requests = [Request(Query(f"q{n}", WORDS[n]), [Candidate(f"d{i}", f"{w} passage", 0.0)
                                                   for i, w in enumerate(WORDS + WORDS[:3])]) for n in range(2)]
    result = run(load_trained(out, config.grpo, dtype="float32") % 5, requests)
    for r in requests:
        ranking = result.rankings[r.query.qid]
        assert sorted(ranking.docids) == sorted(c.docid for c in r.candidates)
        assert ranking.docids[5:] == [c.docid for c in r.candidates[5:]]  # the tail keeps its order
    # 2 groups (3 + 2) per query, 4 answers generated; a random model's unparsable answers fall back to logits
    assert result.usage.completion_tokens > 0 and 0 <= result.usage.parse_failures <= 4
    assert result.usage.calls >= 4


@pytest.mark.slow
def test_grpo_trains_a_lora_adapter_on_smollm2_for_one_step(tmp_path):
    """One GRPO step of the shipped example on SmolLM2-135M (a minute or two on 2 shared cores)."""
    from rankwise.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "train-grpo-groupwise.yaml")
    config.training.max_steps, config.training.batch_size = 1, 1
    config.grpo.num_generations, config.grpo.max_completion_length = 2, 8
    config.data.max_queries = 2
    results = train_grpo(config, tmp_path / "grpo")
    assert results["steps"] == 1 and (tmp_path / "grpo" / "adapter" / "adapter_config.json").is_file()
    assert len(json.loads((tmp_path / "grpo" / "rewards.json").read_text())) == 1
    request = Request(Query("q", "why does bread rise"), [Candidate(f"d{i}", t) for i, t in enumerate(
        ["yeast makes gas that lifts the dough", "plants make food from light", "bitcoin mining uses energy",
         "the capital of France is Paris", "sourdough rises because of wild yeast"])])
    ranking = run(load_trained(tmp_path / "grpo", config.grpo), [request]).rankings["q"]
    assert sorted(ranking.docids) == [f"d{i}" for i in range(5)] and ranking.usage.calls == 1
