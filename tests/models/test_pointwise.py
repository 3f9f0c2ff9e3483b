"""Pointwise methods: properties with an oracle judge on real DL19 candidates, then real small models."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise.data import load_dataset
from rankwise.methods import build_method
from rankwise.pipeline import run
from rankwise.types import Candidate, Query
from tests.oracle import (
    OracleBackend,
    assert_head_reranked,
    ideal_run,
    ndcg10,
    oracle_from_qrels,
)
from tests.tiny_lm import tiny_backend


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    return ds.requests("bm25", top_k=30)[:5], ds.qrels


@pytest.mark.parametrize("method", ["pointwise.yes_no", "pointwise.graded"])
def test_a_perfect_judge_gives_the_ideal_ranking(dl19_requests, method):
    requests, qrels = dl19_requests
    reranker = build_method(method, oracle_from_qrels(requests, qrels))
    result = run(reranker % 30, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ndcg10(ideal_run(requests, qrels), requests, qrels))
    assert result.usage.calls == 5 * 30  # one prompt per candidate, nothing more


def test_top_k_reranks_the_head_and_keeps_the_tail_in_order(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[0]
    ranking = build_method("pointwise.yes_no", oracle_from_qrels(requests, qrels)).rerank(
        request.query, request.candidates, top_k=10)
    assert_head_reranked(ranking, request.candidates, 10)
    assert ranking.usage.calls == 10


def test_ties_keep_the_input_order():
    cands = [Candidate(f"d{i}", f"passage {i}") for i in range(6)]
    ranking = build_method("pointwise.yes_no", OracleBackend({})).rerank(Query("q", "query"), cands)
    assert ranking.docids == [c.docid for c in cands]


def test_graded_score_is_the_expected_grade():
    cands = [Candidate("a", "alpha"), Candidate("b", "beta")]
    ranking = build_method("pointwise.graded", OracleBackend({"alpha": 1, "beta": 3})).rerank(Query("q", "x"), cands)
    assert ranking.docids == ["b", "a"]
    assert ranking.scores[:2] == pytest.approx((3.0, 1.0), abs=1e-6)


def test_prompts_are_swappable(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nuser: 'Q: {query} P: {passage} relevant?'\nchoices: ['Yes', 'No']\n")
    backend = OracleBackend({})
    reranker = build_method("pointwise.yes_no", backend, prompt=str(path))
    assert reranker.prompts(Query("q", "cats"), [Candidate("d", "dogs")]) == ["Q: cats P: dogs relevant?"]


def test_unknown_method_names_close_matches():
    from rankwise.errors import InputError

    with pytest.raises(InputError, match="pointwise.yes_no"):
        build_method("pointwise.yesno", OracleBackend({}))


@pytest.mark.parametrize("method", ["pointwise.yes_no", "pointwise.graded", "pointwise.qlm"])
def test_every_pointwise_method_runs_on_a_real_transformer(method):
    backend = tiny_backend(dtype="float32")
    cands = [Candidate(f"d{i}", f"the capital of France is Paris {i}") for i in range(5)]
    ranking = build_method(method, backend).rerank(Query("q", "capital of France"), cands)
    assert sorted(ranking.docids) == [c.docid for c in cands]
    assert np.isfinite(ranking.scores).all() and ranking.usage.calls == 5
