"""GRPO glue (rankwise.train.grpo): the prompt with its prefilled answer start, the TRL dataset, the
evaluation prompt being the training prompt, and one real GRPOTrainer step on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankwise.train.config import parse_config
from rankwise.train.groups import Group
from rankwise.train.grpo import (
    ANSWER_PREFIX,
    groupwise_messages,
    groupwise_prompt,
    groupwise_rerank,
    grpo_dataset,
    moving_average,
    render_prompt,
    train_grpo,
)
from rankwise.types import Candidate, Query, Request
from tests.tiny_lm import save_tiny_model, tiny_tokenizer

WORDS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


def _groups(n: int = 8) -> list[Group]:
    return [Group(f"q{i}", "query", ("p", "n1", "n2", "n3"), ("POS", "NEG1", "NEG2", "NEG3"), (3.0, 0.0, 1.0, 0.0), 1)
            for i in range(n)]


def test_prompt_numbers_passages_without_brackets():
    prompt = groupwise_prompt("q", ["one two three four", "b"], passage_words=2)
    assert "Passage 1: one two ..." in prompt and "Passage 2: b" in prompt and "[1]" not in prompt
    assert "JSON list of 2 integers from 0 to 3" in prompt


def test_the_prompt_ends_inside_the_prefilled_assistant_turn():
    tok = tiny_tokenizer()
    text = render_prompt(tok, groupwise_messages("q", ["a", "b"], answer_prefix="["))
    assert text.endswith("<|im_start|>assistant\n[")  # the turn is left open: no <|im_end|> after the prefix
    plain = render_prompt(tok, groupwise_messages("q", ["a", "b"], answer_prefix=""))
    assert plain.endswith("<|im_start|>assistant\n")


def test_grpo_rows_shuffle_passages_with_their_labels():
    rows = grpo_dataset(_groups(), tiny_tokenizer(), passage_words=10, seed=1)
    firsts = set()
    for row in rows:
        text = row["prompt"]
        assert isinstance(text, str) and text.endswith(ANSWER_PREFIX) and row["answer_prefix"] == ANSWER_PREFIX
        order = sorted(["POS", "NEG1", "NEG2", "NEG3"], key=text.index)
        assert row["labels"] == [{"POS": 3.0, "NEG1": 0.0, "NEG2": 1.0, "NEG3": 0.0}[name] for name in order]
        firsts.add(order[0])
    assert len(firsts) > 1  # the positive is not always first


class _Recorder:
    """A stand-in causal LM: records the prompt ids it is given and answers ``answer`` after them."""

    def __init__(self, tok, answer: str):
        self.tok, self.answer, self.prompts = tok, answer, []

    def eval(self):
        return self

    def generate(self, input_ids, attention_mask=None, **kwargs):
        self.prompts.append(input_ids[0].tolist())
        tail = torch.tensor([self.tok(self.answer, add_special_tokens=False)["input_ids"]])
        return torch.cat([input_ids, tail], dim=1)


def _request(n: int) -> Request:
    return Request(Query("q1", "query"), [Candidate(f"d{i}", f"passage {i}", 0.0) for i in range(n)])


def test_rerank_prompts_the_model_exactly_as_training_did():
    tok = tiny_tokenizer()
    model = _Recorder(tok, "0, 3, 1]")  # continues the prefilled "["
    answers = []
    run, failures = groupwise_rerank(model, tok, [_request(4)], top_k=3, group_size=3, passage_words=10,
                                     answers=answers)
    assert answers == ["[0, 3, 1]"]
    group = Group("q1", "query", ("d0", "d1", "d2"), ("passage 0", "passage 1", "passage 2"), (0.0, 0.0, 0.0), 1)
    texts = ["passage 0", "passage 1", "passage 2"]
    assert model.prompts == [tok(render_prompt(tok, groupwise_messages("query", texts, 10)))["input_ids"]]
    trained = grpo_dataset([group], tok, passage_words=10, seed=0)[0]["prompt"]  # the same, passages shuffled
    shuffled = sorted(texts, key=trained.index)
    assert trained == render_prompt(tok, groupwise_messages("query", shuffled, 10))
    assert failures == 0 and list(run["q1"]) == ["d1", "d2", "d0", "d3"]  # scores 0, 3, 1; the tail follows


def test_rerank_counts_a_broken_answer_and_keeps_first_stage_order():
    tok = tiny_tokenizer()
    run, failures = groupwise_rerank(_Recorder(tok, "yes"), tok, [_request(3)], top_k=3, group_size=3)
    assert failures == 1 and list(run["q1"]) == ["d0", "d1", "d2"]


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
        "grpo": {"group_size": 3, "num_generations": 2, "max_completion_length": 4, "passage_words": 8},
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
