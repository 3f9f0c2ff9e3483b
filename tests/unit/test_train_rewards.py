"""GRPO rewards for the groupwise format (pure functions, TRL's signature), reading answers with the
answer regex of the trained prompt (groupwise.json) and the method's parser."""

from __future__ import annotations

import pytest

from rankwise.methods import build_method
from rankwise.prompts import load_prompt
from rankwise.train.rewards import (answer_status, make_distribution_reward, make_format_reward, make_ndcg_reward,
                                    ndcg_at_k, parse_scores, reward_functions)
from tests.listwise_oracle import ListwiseOracle

LABELS = [[3.0, 0.0, 1.0]]
PATTERN = load_prompt("groupwise.json").answer_regex
format_reward = make_format_reward(PATTERN)
distribution_reward = make_distribution_reward(PATTERN)


@pytest.mark.parametrize("text, status", [
    ("[3, 0, 1]", "ok"), ("Scores: [2.5, 0, 1] done", "ok"), ("[1, 2]", "count"), ("3 0 1", "broken"),
    ("[3, 0, x]", "broken"), ("[]", "broken"), ("[true, 0, 1]", "broken"), ("[3, 0, 1", "broken"),
])
def test_parse_scores(text, status):
    assert parse_scores(text, 3, PATTERN)[0] == status


def test_ndcg_of_the_induced_ranking():
    assert ndcg_at_k([3, 0, 1], [3, 0, 1]) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0, 0], [0, 0, 3]) < 1.0  # ties keep prompt order: the relevant one comes last
    assert ndcg_at_k([1, 2, 3], [0, 0, 0]) == 0.0
    assert ndcg_at_k([0, 1, 2], [3, 0, 1], k=1) == pytest.approx(1 / 7)  # gain 2^1-1 of an ideal 2^3-1


def test_rewards_gate_on_the_format_like_reasonrank():
    ndcg = make_ndcg_reward(PATTERN, 10)
    completions = ["[3, 0, 1]", "[0, 3, 1]", "[1, 2]", "no idea"]
    labels = LABELS * 4
    values = ndcg(completions, labels)
    assert values[0] == pytest.approx(1.0) and 0 < values[1] < 1 and values[2:] == [0.0, -1.0]
    assert format_reward(completions, labels) == [1.0, 1.0, pytest.approx(-0.5 / 3), -1.0]
    dist = distribution_reward(completions, labels)
    assert dist[0] == 1.0 and dist[1] == pytest.approx(1 - 6 / 9) and dist[2:] == [0.0, 0.0]
    assert distribution_reward(["[9, -4, 1]"], LABELS) == [1.0]  # scores are clipped to 0-3


def test_conversational_completions_are_read():
    assert format_reward([[{"role": "assistant", "content": "[1, 0, 0]"}]], LABELS) == [1.0]


@pytest.mark.parametrize("text, status", [
    ("[3, 0, 1]", "ok"), ("[3, 0, 1]  \n", "ok"), ("[3, 0, 1] because", "trailing"), ("[3, 0, 7]", "range"),
    ("[1, 2]", "count"), ("[3, 0, 1, 2", "unclosed"), ("[3, 0,", "unclosed"), ("[", "broken"), ("nope", "broken"),
])
def test_answer_status_is_finer_than_parse_scores(text, status):
    assert answer_status(text, 3, PATTERN)[0] == status


def test_format_reward_gives_partial_credit_in_order():
    texts = ["[3, 0, 1]", "[3, 0, 1] and more", "[3, 0, 9]", "[3, 0, 1, 2]", "[3]", "[3, 0, 1, 2, 0, 0, 1", "hm"]
    values = format_reward(texts, LABELS * len(texts))
    assert values == sorted(values, reverse=True) and values[0] == 1.0 and values[-1] == -1.0
    assert values[3] > values[4]  # one score too many beats two missing
    assert len(set(values)) == len(values)  # every kind of answer gets its own value: GRPO sees a spread


def test_rewards_put_the_prefilled_answer_start_back():
    """The prompt ends with "[", so the completion is the rest of the list."""
    prefix = ["["]
    assert format_reward(["3, 0, 1]"], LABELS, answer_prefix=prefix) == [1.0]
    assert make_ndcg_reward(PATTERN)(["3, 0, 1]"], LABELS, answer_prefix=prefix) == [pytest.approx(1.0)]
    assert distribution_reward(["3, 0, 1]"], LABELS, answer_prefix=prefix) == [1.0]
    assert format_reward(["3, 0, 1]"], LABELS) == [-1.0]  # without the prefix it is not a list


def test_reward_functions_follow_the_weights():
    funcs, weights = reward_functions({"format": 0.5, "ndcg": 1.0}, PATTERN)
    assert [f.__name__ for f in funcs] == ["ndcg_reward", "format_reward"] and weights == [1.0, 0.5]


@pytest.mark.parametrize("completion", ["3, 0, 1]", "2, 0, 1] and more", "3, 0, 1", "1, 2]", "no"])
def test_a_well_formed_answer_is_one_the_method_reads_the_same_way(completion):
    """The rewards read what ``groupwise.generate`` reads: its scores where the format is right."""
    method = build_method("groupwise.generate", ListwiseOracle({}), prompt="groupwise.json", answer_prefix="[")
    status, scores = parse_scores("[" + completion, 3, PATTERN)
    read = method.read_answer(completion, 3)
    if status == "ok":
        assert read == dict(enumerate(scores))
    else:  # a short or broken list: the method scores some documents by its fallback
        assert len(read) < 3
