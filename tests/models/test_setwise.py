"""Setwise methods and the Rank-R1 reasoning variant: a perfect judge on real DL19 candidates, prompt counts,
answer parsing and its fallback, then real transformers code paths (a tiny random model) and a real small
model (slow)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rankwise.data import load_dataset
from rankwise.errors import InputError
from rankwise.methods import build_method, sorting
from rankwise.methods.setwise import label_choices, parse_label
from rankwise.pipeline import run
from rankwise.prompts import load_prompt
from rankwise.types import Candidate, Query
from tests.oracle import assert_head_reranked, ideal_run, ndcg10
from tests.oracle_compare import CompareOracle, compare_oracle
from tests.tiny_lm import tiny_backend

N, K, QUERIES = 20, 10, 5
METHODS = ["setwise.heapsort", "setwise.bubblesort", "setwise.reasoning"]


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    return ds.requests("bm25", top_k=N)[:QUERIES], ds.qrels


def ideal_ndcg10(requests, qrels):
    return ndcg10(ideal_run(requests, qrels), requests, qrels)


@pytest.mark.parametrize("set_size", [3, 4, 6])
@pytest.mark.parametrize("method,mode", [("setwise.heapsort", "scoring"), ("setwise.bubblesort", "scoring"),
                                         ("setwise.heapsort", "generation"), ("setwise.reasoning", None)])
def test_a_perfect_judge_gives_the_ideal_ranking(dl19_requests, method, mode, set_size):
    requests, qrels = dl19_requests
    opts = {"mode": mode} if mode else {}
    reranker = build_method(method, compare_oracle(requests, qrels), k=K, set_size=set_size, **opts)
    result = run(reranker % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ideal_ndcg10(requests, qrels))
    assert result.usage.parse_failures == 0


def test_bubble_sort_works_with_pairs(dl19_requests):
    requests, qrels = dl19_requests
    reranker = build_method("setwise.bubblesort", compare_oracle(requests, qrels), k=K, set_size=2)
    result = run(reranker % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ideal_ndcg10(requests, qrels))


def test_prompt_counts(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[0]
    backend = compare_oracle(requests, qrels)
    ranking = build_method("setwise.bubblesort", backend, k=K, set_size=4).rerank(
        request.query, request.candidates, top_k=N)
    assert ranking.usage.calls == sorting.bubble_calls(N, K, 4) == backend.usage.forward_passes
    backend = compare_oracle(requests, qrels)
    ranking = build_method("setwise.heapsort", backend, k=K, set_size=4).rerank(
        request.query, request.candidates, top_k=N)
    print(f"setwise.heapsort N={N} k={K} c=4: {ranking.usage.calls} prompts in "
          f"{backend.usage.forward_passes} backend calls; bound {sorting.heap_bound(N, K, 3)}")
    assert ranking.usage.calls <= sorting.heap_bound(N, K, 3)
    assert backend.usage.forward_passes < ranking.usage.calls  # a heap depth's prompts share a batch


def test_malformed_reasoning_falls_back_to_the_label_logits(dl19_requests):
    requests, qrels = dl19_requests
    backend = compare_oracle(requests, qrels, malformed_every=3)
    reranker = build_method("setwise.reasoning", backend, k=K, reasoning_tokens=48)
    result = run(reranker % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ideal_ndcg10(requests, qrels))
    assert result.usage.parse_failures == backend.generated // 3 > 0
    assert set(backend.max_new_tokens) == {48}  # the reasoning budget
    assert result.usage.completion_tokens > 0


@pytest.mark.parametrize("text,expected", [
    ("<think>B looks best</think>\n<answer>B</answer>", 1),
    ("<think>...</think> <answer> [C] </answer>", 2),
    ("<think>...</think><answer>Passage D", 3),
    ("<think>...</think><answer>c</answer>", 2),
    ("<think>too long, the budget ran out", None),
    ("<think>...</think><answer>E</answer>", None),  # not one of the 4 labels
    ("<think>...</think><answer>the second</answer>", None),
    ("<think>A is good</think>", None),
])
def test_reasoning_answers_are_parsed_robustly(text, expected):
    assert parse_label(load_prompt("setwise.reasoning"), text, 4) == expected


def test_label_choices_accept_both_tokenisations():
    assert label_choices(3) == ["A| A", "B| B", "C| C"]


def test_the_prompt_labels_the_passages():
    method = build_method("setwise.heapsort", CompareOracle({}))
    prompt = method.prompt("q", ["one", "two", "three"])
    assert 'Passage A: "one"\n\nPassage B: "two"\n\nPassage C: "three"' in prompt
    assert prompt.endswith("Output only the passage label of the most relevant passage:Passage")
    assert build_method("setwise.reasoning", CompareOracle({})).prompt("q", ["one"]).endswith("<think>")


def test_equal_passages_keep_the_input_order():
    cands = [Candidate(f"d{i}", f"passage number {i}") for i in range(9)]
    for name in METHODS:
        ranking = build_method(name, CompareOracle({c.text: 2 for c in cands}), k=5).rerank(Query("q", "x"), cands)
        assert ranking.docids == [c.docid for c in cands]


def test_top_k_reranks_the_head_and_keeps_the_tail_in_order(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[2]
    for name in METHODS:
        ranking = build_method(name, compare_oracle(requests, qrels), k=3).rerank(
            request.query, request.candidates, top_k=9)
        assert_head_reranked(ranking, request.candidates, 9)


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="set_size"):
        build_method("setwise.bubblesort", CompareOracle({}), set_size=1)
    with pytest.raises(InputError, match="set_size >= 3"):
        build_method("setwise.heapsort", CompareOracle({}), set_size=2)
    with pytest.raises(InputError, match="algorithm"):
        build_method("setwise.reasoning", CompareOracle({}), algorithm="quicksort")


@pytest.mark.parametrize("method", METHODS)
def test_every_setwise_method_runs_on_a_real_transformer(method):
    backend = tiny_backend(dtype="float32")
    cands = [Candidate(f"d{i}", f"the capital of France is Paris {i}") for i in range(7)]
    opts = {"reasoning_tokens": 6} if method == "setwise.reasoning" else {}
    ranking = build_method(method, backend, k=3, set_size=3, **opts).rerank(Query("q", "capital of France"), cands)
    assert sorted(ranking.docids) == [c.docid for c in cands]
    assert np.isfinite(ranking.scores).all() and ranking.usage.calls > 0
    if method == "setwise.reasoning":  # a random model never closes its answer: every prompt falls back
        assert ranking.usage.parse_failures > 0 and ranking.usage.completion_tokens > 0


@pytest.mark.slow
def test_a_real_small_model_picks_the_obvious_passage():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from rankwise.llm import load_backend

    backend = load_backend("smollm2-135m", engine="transformers")
    query = Query("q", "what is the capital of France")
    cands = [Candidate("bread", "Sourdough bread rises because wild yeast ferments the dough."),
             Candidate("paris", "Paris is the capital and largest city of France."),
             Candidate("moon", "The Moon orbits the Earth every 27 days.")]
    for name in METHODS:
        opts = {"reasoning_tokens": 32} if name == "setwise.reasoning" else {}
        ranking = build_method(name, backend, k=1, set_size=3, **opts).rerank(query, cands)
        assert sorted(ranking.docids) == ["bread", "moon", "paris"] and ranking.usage.calls > 0


def test_no_candidates_and_one_candidate():
    one = [Candidate("d0", "only passage")]
    for name in METHODS + ["pairwise.allpairs", "pairwise.heapsort", "pairwise.sliding"]:
        method = build_method(name, CompareOracle({"only passage": 1}))
        assert method.rerank(Query("q", "x"), []).docids == []
        ranking = method.rerank(Query("q", "x"), one)
        assert ranking.docids == ["d0"] and ranking.usage.calls == 0
