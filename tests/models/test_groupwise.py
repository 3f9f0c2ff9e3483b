"""Groupwise (GroupRank) methods: group arithmetic, score parsing and the expected score over digit tokens
(with "10" as one or two tokens), a perfect judge on real DL19 candidates, one backend call per group
(logits) or per round (generate), parse fallbacks, then a tiny random model and a real small model (slow)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from rankwise.data import load_dataset
from rankwise.errors import InputError
from rankwise.methods import build_method
from rankwise.methods.groupwise import (
    Groupwise,
    expected_scores,
    make_groups,
    parse_scores,
)
from rankwise.pipeline import run
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query
from tests.listwise_oracle import ListwiseOracle, listwise_oracle
from tests.oracle import ideal_run, ndcg10
from tests.tiny_lm import tiny_backend

N, QUERIES = 30, 5
METHODS = ["groupwise.generate", "groupwise.logits"]
PATTERN = load_prompt("groupwise.score").answer_regex


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    return ds.requests("bm25", top_k=N)[:QUERIES], ds.qrels


def synthetic(n: int) -> tuple[list[Candidate], dict[str, int]]:
    cands = [Candidate(f"d{i}", f"passage number {i} about topic {i % 7}") for i in range(n)]
    return cands, {c.text: (i * 7) % 4 for i, c in enumerate(cands)}


def test_groups_cover_every_candidate_once():
    assert make_groups(25, 10) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    shuffled = make_groups(25, 10, shuffle_seed=3)
    assert sorted(i for g in shuffled for i in g) == list(range(25)) and shuffled != make_groups(25, 10)
    assert shuffled == make_groups(25, 10, shuffle_seed=3)  # seeded


@pytest.mark.parametrize("text,expected", [
    ("Document [1] score: 7\nDocument [2] score: 3", {0: 7.0, 1: 3.0}),
    ('{"1": 7, "2": 3.5}', {0: 7.0, 1: 3.5}),
    ("[2]: 10\n[1]: 0", {0: 0.0, 1: 10.0}),
    ("1: 4, 2: 9", {0: 4.0, 1: 9.0}),
    ("Sure! Here are the scores.\nDocument [2] score: 6\nThat is all.", {1: 6.0}),
    ("Document [1] score: 7\nDocument [1] score: 2", {0: 7.0}),  # a repeat: the first wins
    ("Document [3] score: 7\nDocument [2] score: 11", {}),  # out-of-range number and score
    ("", {}),
    ("I cannot score these documents.", {}),
])
def test_scores_are_parsed_robustly(text, expected):
    assert parse_scores(text, 2, PATTERN) == expected


JSON = load_prompt("groupwise.json").answer_regex


@pytest.mark.parametrize("text,expected", [
    ("[3, 0, 1]", {0: 3.0, 1: 0.0}),  # by position; a third score has no document
    ("Scores: [2.5, 1] and more [0, 0]", {0: 2.5, 1: 1.0}),  # the first list
    ("[1]", {0: 1.0}),
    ("[3, 11]", {0: 3.0}),  # out of 0..10
    ("[3, 0", {}), ("[a, 1]", {}), ("[true, 1]", {}), ("[]", {}), ("3, 0", {}),
])
def test_a_json_list_answer_is_read_by_position(text, expected):
    assert parse_scores(text, 2, JSON) == expected


def test_the_answer_prefix_ends_the_prompt_and_starts_the_answer_read():
    method = build_method("groupwise.generate", ListwiseOracle({}), prompt="groupwise.json", answer_prefix="[")
    prompt = method.prompt("q", ["one", "two"])
    assert prompt.endswith("one score per passage in order: [score of passage 1, ..., score of passage 2].[")
    assert "Passage 1: one\nPassage 2: two" in prompt
    assert method.read_answer("2, 0]", 2) == {0: 2.0, 1: 0.0}


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_perfect_judge_answering_json_lists_gives_the_ideal_ranking(dl19_requests, rounds):
    requests, qrels = dl19_requests
    method = build_method("groupwise.generate", listwise_oracle(requests, qrels), prompt="groupwise.json",
                          answer_prefix="[", group_size=5, rounds=rounds)
    result = run(method % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ndcg10(ideal_run(requests, qrels), requests, qrels))
    assert result.usage.parse_failures == 0


def test_expected_score_over_digit_tokens():
    certain = np.full((3, 10), -30.0)
    certain[0, 7] = certain[1, 1] = certain[2, 1] = 0.0
    # rows 1 and 2 start with "1": P("0" after "1") tells 1 from 10
    out = expected_scores(certain, np.log(np.array([0.5, 1e-9, 1.0])))
    assert out == pytest.approx([7.0, 1.0, 10.0], abs=1e-6)
    eleven = np.full((1, 11), -30.0)
    eleven[0, 10] = 0.0
    assert expected_scores(eleven) == pytest.approx([10.0])
    assert expected_scores(np.zeros((1, 10))) == pytest.approx([4.5])


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize("split_digits", [False, True])  # "10" one token or two
@pytest.mark.parametrize("method", METHODS)
def test_a_perfect_judge_gives_the_ideal_ranking(dl19_requests, method, split_digits, rounds):
    requests, qrels = dl19_requests
    backend = listwise_oracle(requests, qrels, split_digits=split_digits)
    result = run(build_method(method, backend, rounds=rounds) % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ndcg10(ideal_run(requests, qrels), requests, qrels))
    assert result.usage.parse_failures == 0


@pytest.mark.parametrize("split_digits", [False, True])
@pytest.mark.parametrize("n,g", [(25, 10), (30, 10), (7, 3)])
def test_backend_calls_per_group_and_per_round(n, g, split_digits):
    cands, grades = synthetic(n)
    groups = math.ceil(n / g)
    backend = ListwiseOracle(grades, split_digits=split_digits)
    ranking = build_method("groupwise.logits", backend, group_size=g, rounds=2).rerank(Query("q", "x"), cands)
    assert backend.usage.forward_passes == 2 * groups  # one call per group: its prefix is shared
    assert ranking.usage.calls == 2 * n * (2 if split_digits else 1)  # two prompts per document for "1"+"0"
    backend = ListwiseOracle(grades)
    ranking = build_method("groupwise.generate", backend, group_size=g, rounds=2).rerank(Query("q", "x"), cands)
    assert backend.generate_calls == 2 and ranking.usage.calls == 2 * groups  # all groups of a round at once
    assert [grades[c.text] for c in ranking.candidates] == sorted(grades.values(), reverse=True)


def test_unparsed_answers_fall_back_to_the_logits_and_are_counted():
    cands, grades = synthetic(30)
    backend = ListwiseOracle(grades, malformed_every=2)
    ranking = build_method("groupwise.generate", backend).rerank(Query("q", "x"), cands)
    assert ranking.usage.parse_failures == 1  # the second of three groups
    assert backend.usage.forward_passes == 2  # the batch of generations, then the fallback group
    assert [grades[c.text] for c in ranking.candidates] == sorted(grades.values(), reverse=True)


def test_the_prompt_numbers_the_documents_and_the_score_prefix_follows_it():
    method = build_method("groupwise.logits", ListwiseOracle({}))
    prompt = method.prompt("q", ["one", "two"])
    assert "Document [1]: one\nDocument [2]: two" in prompt and "Score all 2 documents" in prompt
    assert method.score_prefix.format(label=2) == "Document [2] score: "


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="mode"):
        Groupwise(ListwiseOracle({}), "sample")
    with pytest.raises(InputError, match="group_size"):
        build_method("groupwise.logits", ListwiseOracle({}), group_size=0)
    with pytest.raises(InputError, match="answer_prefix"):
        build_method("groupwise.logits", ListwiseOracle({}), answer_prefix="[")
    three = PromptTemplate("three", "{query} {passages}", answer_regex=r"(\d)(\d)(\d)", item="{label} {passage}")
    with pytest.raises(InputError, match="one group"):
        build_method("groupwise.generate", ListwiseOracle({}), prompt=three)


def test_top_k_ties_and_tiny_lists():
    cands, grades = synthetic(25)
    for name in METHODS:
        ranking = build_method(name, ListwiseOracle(grades)).rerank(Query("q", "x"), cands, top_k=12)
        assert ranking.docids[12:] == [c.docid for c in cands[12:]]
        equal = build_method(name, ListwiseOracle({c.text: 2 for c in cands}), rounds=3)
        assert equal.rerank(Query("q", "x"), cands).docids == [c.docid for c in cands]
        method = build_method(name, ListwiseOracle({"only": 1}))
        assert method.rerank(Query("q", "x"), []).docids == []
        one = method.rerank(Query("q", "x"), [Candidate("d0", "only")])
        assert one.docids == ["d0"] and one.usage.calls == 0


@pytest.mark.parametrize("method", METHODS)
def test_every_groupwise_method_runs_on_a_real_transformer(method):
    backend = tiny_backend(dtype="float32")
    cands = [Candidate(f"d{i}", f"the capital of France is Paris {i}") for i in range(7)]
    ranking = build_method(method, backend, group_size=3, rounds=2, tokens_per_item=2).rerank(
        Query("q", "capital of France"), cands)
    assert sorted(ranking.docids) == sorted(c.docid for c in cands)
    assert np.isfinite(ranking.scores).all() and ranking.usage.calls > 0
    assert all(0.0 <= s <= 10.0 for s in ranking.scores)
    if method == "groupwise.generate":  # a random model writes no scores: every answer falls back
        assert ranking.usage.parse_failures == 6 and ranking.usage.completion_tokens > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_real_small_model_scores_one_dl19_query(dl19_requests, method):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from rankwise.llm import load_backend

    backend = load_backend("smollm2-135m", engine="transformers")
    request = dl19_requests[0][0]
    ranking = build_method(method, backend, group_size=5, max_passage_tokens=64).rerank(
        request.query, request.candidates, top_k=10)
    assert sorted(ranking.docids) == sorted(c.docid for c in request.candidates)
    assert all(0.0 <= s <= 10.0 for s in ranking.scores[:10]) and ranking.usage.calls > 0
    print(method, ranking.usage.to_dict())
