"""GRPO rewards for the groupwise format (pure functions, TRL's signature) and the prompt/dataset."""

from __future__ import annotations

import pytest

from rankwise.train.data import Group
from rankwise.train.grpo import groupwise_prompt, grpo_dataset
from rankwise.train.rewards import (distribution_reward, format_reward, make_ndcg_reward, ndcg_at_k, parse_scores,
                                    reward_functions)

LABELS = [[3.0, 0.0, 1.0]]


@pytest.mark.parametrize("text, status", [
    ("[3, 0, 1]", "ok"), ("Scores: [2.5, 0, 1] done", "ok"), ("[1, 2]", "count"), ("3 0 1", "broken"),
    ("[3, 0, x]", "broken"), ("[]", "broken"), ("[true, 0, 1]", "broken"), ("[3, 0, 1", "broken"),
])
def test_parse_scores(text, status):
    assert parse_scores(text, 3)[0] == status


def test_ndcg_of_the_induced_ranking():
    assert ndcg_at_k([3, 0, 1], [3, 0, 1]) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0, 0], [0, 0, 3]) < 1.0  # ties keep prompt order: the relevant one comes last
    assert ndcg_at_k([1, 2, 3], [0, 0, 0]) == 0.0
    assert ndcg_at_k([0, 1, 2], [3, 0, 1], k=1) == pytest.approx(1 / 7)  # gain 2^1-1 of an ideal 2^3-1


def test_rewards_gate_on_the_format_like_reasonrank():
    ndcg = make_ndcg_reward(10)
    completions = ["[3, 0, 1]", "[0, 3, 1]", "[1, 2]", "no idea"]
    labels = LABELS * 4
    values = ndcg(completions, labels)
    assert values[0] == pytest.approx(1.0) and 0 < values[1] < 1 and values[2:] == [0.0, -1.0]
    assert format_reward(completions, labels) == [1.0, 1.0, 0.0, -1.0]
    dist = distribution_reward(completions, labels)
    assert dist[0] == 1.0 and dist[1] == pytest.approx(1 - 6 / 9) and dist[2:] == [0.0, 0.0]
    assert distribution_reward(["[9, -4, 1]"], LABELS) == [1.0]  # scores are clipped to 0-3


def test_conversational_completions_are_read():
    assert format_reward([[{"role": "assistant", "content": "[1, 0, 0]"}]], LABELS) == [1.0]


def test_reward_functions_follow_the_weights():
    funcs, weights = reward_functions({"format": 0.5, "ndcg": 1.0})
    assert [f.__name__ for f in funcs] == ["ndcg_reward", "format_reward"] and weights == [1.0, 0.5]


def test_grpo_rows_shuffle_passages_with_their_labels():
    groups = [Group(f"q{i}", "query", ("p", "n1", "n2", "n3"), ("POS", "NEG1", "NEG2", "NEG3"),
                    (3.0, 0.0, 1.0, 0.0), 1) for i in range(8)]
    rows = grpo_dataset(groups, passage_words=10, seed=1)
    firsts = set()
    for row in rows:
        text = row["prompt"][0]["content"]
        order = sorted(["POS", "NEG1", "NEG2", "NEG3"], key=text.index)
        assert row["labels"] == [{"POS": 3.0, "NEG1": 0.0, "NEG2": 1.0, "NEG3": 0.0}[name] for name in order]
        firsts.add(order[0])
    assert len(firsts) > 1  # the positive is not always first
    prompt = groupwise_prompt("q", ["one two three four", "b"], passage_words=2)
    assert "[1] one two ..." in prompt and "JSON list of 2 integers" in prompt


@pytest.mark.slow
def test_grpo_trains_a_lora_adapter_on_smollm2_for_one_step(tmp_path, monkeypatch):
    """One GRPO step of the shipped example on SmolLM2-135M (minutes on 2 shared cores)."""
    import json
    from pathlib import Path

    from rankwise.train.config import load_config
    from rankwise.train.grpo import train_grpo

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "train-grpo-groupwise.yaml")
    config.training.max_steps, config.training.batch_size = 1, 1
    config.grpo.num_generations, config.grpo.max_completion_length = 2, 8
    config.data.max_queries = 2
    results = train_grpo(config, tmp_path / "grpo")
    assert results["steps"] == 1 and (tmp_path / "grpo" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "grpo" / "config.json").is_file()  # the merged model loads as a plain directory
    assert len(json.loads((tmp_path / "grpo" / "rewards.json").read_text())) == 1
