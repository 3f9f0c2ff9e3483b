"""Pairwise (PRP) methods: a perfect comparator on real DL19 candidates, exact prompt counts, position bias,
generation mode, then real transformers code paths (a tiny random model) and a real small model (slow)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import rankwise.methods.pairwise
from rankwise.data import load_dataset
from rankwise.errors import InputError
from rankwise.methods import build_method, sorting
from rankwise.pipeline import run
from rankwise.types import Candidate, Query
from tests.oracle import assert_head_reranked, ideal_run, ndcg10
from tests.oracle_compare import CompareOracle, compare_oracle
from tests.tiny_lm import tiny_backend

N, K, QUERIES = 20, 10, 5
METHODS = ["pairwise.allpairs", "pairwise.heapsort", "pairwise.sliding", "pairwise.tsp"]


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    return ds.requests("bm25", top_k=N)[:QUERIES], ds.qrels


@pytest.mark.parametrize("mode", ["scoring", "generation"])
@pytest.mark.parametrize("method", METHODS)
def test_a_perfect_comparator_gives_the_ideal_ranking(dl19_requests, method, mode):
    requests, qrels = dl19_requests
    result = run(build_method(method, compare_oracle(requests, qrels), k=K, mode=mode) % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ndcg10(ideal_run(requests, qrels), requests, qrels))
    assert result.usage.parse_failures == 0


def test_prompt_counts_follow_the_formulas(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[0]
    counts = {}
    reused = {}
    for method in METHODS:
        backend = compare_oracle(requests, qrels)
        ranking = build_method(method, backend, k=K, reuse_comparisons=False).rerank(
            request.query, request.candidates, top_k=N)
        counts[method] = (ranking.usage.calls, backend.usage.forward_passes)
        assert ranking.usage.comparisons * 2 == ranking.usage.calls  # each comparison: both orders
        again = build_method(method, compare_oracle(requests, qrels), k=K).rerank(
            request.query, request.candidates, top_k=N)
        reused[method] = again.usage.calls
        assert again.docids == ranking.docids  # reusing answers changes the cost, never the ranking
    assert counts["pairwise.allpairs"] == (N * (N - 1), 1)  # every pair, both orders, one batch
    assert counts["pairwise.sliding"] == (K * (N - 1) * 2, K * (N - 1))  # sequential by nature
    heap_prompts, heap_batches = counts["pairwise.heapsort"]
    comparisons = heap_prompts // 2
    print(f"pairwise.heapsort N={N} k={K}: {comparisons} comparisons, {heap_prompts} prompts, "
          f"{heap_batches} backend calls; bound {2 * sorting.heap_bound(N, K)}")
    assert heap_prompts % 2 == 0
    assert comparisons <= 2 * sorting.heap_bound(N, K) <= 2 * (N + K * math.ceil(math.log2(N)))
    assert heap_batches < comparisons  # comparisons of one heap depth share a batch
    # A pair is asked once per query: sliding windows re-meet most pairs, heap sort some.
    print(f"with reuse: {reused}")
    assert reused["pairwise.allpairs"] == counts["pairwise.allpairs"][0]
    assert reused["pairwise.sliding"] < counts["pairwise.sliding"][0]
    assert reused["pairwise.heapsort"] <= heap_prompts


def test_a_position_a_biased_comparator_is_neutralised(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[0]
    grades = [qrels[request.query.qid].get(c.docid, 0) for c in request.candidates]
    # bias 1.5: picks A unless B is better by 2 grades. Asked once, it often prefers the worse passage.
    biased = compare_oracle(requests, qrels, bias=1.5)
    method = build_method("pairwise.allpairs", biased)
    pairs = [(a, b) for a in range(N) for b in range(a + 1, N)]
    one_order = biased.choice_logprobs([method.prompt(request.query.text, request.candidates[b].content,
                                                      request.candidates[a].content) for a, b in pairs],
                                       ["A", "B"])
    assert any(one_order[i, 0] > one_order[i, 1] and grades[b] < grades[a] for i, (a, b) in enumerate(pairs))
    # Asked both ways, a preference survives only where it is real; never towards the worse passage.
    judge = rankwise.methods.pairwise._Judge(method, request.query.text, [c.content for c in request.candidates])
    shares = judge(pairs)
    expected = [1.0 if grades[a] - grades[b] >= 2 else 0.0 if grades[b] - grades[a] >= 2 else 0.5
                for a, b in pairs]
    assert shares == expected
    assert (judge.comparisons, judge.inconsistent) == (len(pairs), expected.count(0.5))  # the bias, measured
    # A judge that always answers A decides nothing: every method keeps the input order, and its Usage
    # shows why: no comparison's two orders agree.
    for name in METHODS:
        ranking = build_method(name, compare_oracle(requests, qrels, bias=100.0), k=K).rerank(
            request.query, request.candidates, top_k=N)
        assert ranking.docids == [c.docid for c in request.candidates]
        assert ranking.usage.inconsistent == ranking.usage.comparisons == ranking.usage.calls // 2 > 0


@pytest.mark.parametrize("method", METHODS)
def test_the_probability_rule_cancels_a_bias_that_the_prp_rule_turns_into_draws(dl19_requests, method):
    requests, qrels = dl19_requests
    ideal = ndcg10(ideal_run(requests, qrels), requests, qrels)
    # bias 3: the judge picks A unless B is better by 3 grades (the whole scale): PRP sees draws almost
    # everywhere; the mean of the two orders' probabilities keeps the judge's real preference
    soft = run(build_method(method, compare_oracle(requests, qrels, bias=3.0), k=K, rule="probability") % N,
               requests)
    hard = run(build_method(method, compare_oracle(requests, qrels, bias=3.0), k=K) % N, requests)
    assert ndcg10(soft.run(), requests, qrels) == pytest.approx(ideal)
    assert ndcg10(hard.run(), requests, qrels) < ideal - 0.05
    assert soft.usage.calls == hard.usage.calls or method != "pairwise.allpairs"  # same prompts, other rule


def test_the_probability_rule_draws_on_mirror_answers_and_equal_passages():
    cands = [Candidate(f"d{i}", f"passage number {i}") for i in range(7)]
    for bias in (0.0, 2.0):
        backend = CompareOracle({c.text: 1 for c in cands}, bias=bias)
        method = build_method("pairwise.allpairs", backend, rule="probability")
        judge = rankwise.methods.pairwise._Judge(method, "query", [c.content for c in cands])
        assert judge([(0, 1), (2, 5)]) == [0.5, 0.5]
        for name in METHODS:
            ranking = build_method(name, backend, k=4, rule="probability").rerank(Query("q", "query"), cands)
            assert ranking.docids == [c.docid for c in cands]


def test_top_k_reranks_the_head_and_keeps_the_tail_in_order(dl19_requests):
    requests, qrels = dl19_requests
    request = requests[1]
    for name in METHODS:
        ranking = build_method(name, compare_oracle(requests, qrels), k=3).rerank(
            request.query, request.candidates, top_k=8)
        assert_head_reranked(ranking, request.candidates, 8)


def test_equal_passages_keep_the_input_order():
    cands = [Candidate(f"d{i}", f"passage number {i}") for i in range(7)]
    grades = {c.text: 1 for c in cands}
    for name in METHODS:
        ranking = build_method(name, CompareOracle(grades), k=4).rerank(Query("q", "query"), cands)
        assert ranking.docids == [c.docid for c in cands]


def test_unparseable_generations_are_counted_and_undecided():
    cands = [Candidate(f"d{i}", f"passage number {i}") for i in range(4)]
    backend = CompareOracle({c.text: g for c, g in zip(cands, [0, 3, 1, 2])}, malformed_every=1)
    ranking = build_method("pairwise.allpairs", backend, mode="generation").rerank(Query("q", "x"), cands)
    assert ranking.usage.parse_failures == 12 and ranking.docids == [c.docid for c in cands]


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="mode"):
        build_method("pairwise.heapsort", CompareOracle({}), mode="vote")
    with pytest.raises(InputError, match="k must"):
        build_method("pairwise.sliding", CompareOracle({}), k=0)
    with pytest.raises(InputError, match="option rule must be one of prp, probability, bradley-terry, got .soft."):
        build_method("pairwise.allpairs", CompareOracle({}), rule="soft")


def test_the_prp_prompt_ends_with_the_answer_prefix():
    method = build_method("pairwise.heapsort", CompareOracle({}))
    prompt = method.prompt("how tall is a giraffe", "first", "second")
    assert prompt.startswith('Given a query "how tall is a giraffe", which of the following two passages')
    assert 'Passage A: "first"' in prompt and 'Passage B: "second"' in prompt
    assert prompt.endswith("Output Passage A or Passage B:Passage")


@pytest.mark.parametrize("mode", ["scoring", "generation"])
@pytest.mark.parametrize("method", METHODS)
def test_every_pairwise_method_runs_on_a_real_transformer(method, mode):
    backend = tiny_backend(dtype="float32")
    cands = [Candidate(f"d{i}", f"the capital of France is Paris {i}") for i in range(5)]
    ranking = build_method(method, backend, k=3, mode=mode, max_new_tokens=3).rerank(
        Query("q", "capital of France"), cands)
    assert sorted(ranking.docids) == [c.docid for c in cands]
    assert np.isfinite(ranking.scores).all() and ranking.usage.calls > 0 and ranking.usage.prompt_tokens > 0


@pytest.mark.slow
def test_a_real_small_model_ranks_an_obvious_pair():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from rankwise.llm import load_backend

    backend = load_backend("smollm2-135m", engine="transformers")
    query = Query("q", "what is the capital of France")
    cands = [Candidate("bread", "Sourdough bread rises because wild yeast ferments the dough."),
             Candidate("paris", "Paris is the capital and largest city of France.")]
    for name in METHODS:
        ranking = build_method(name, backend, k=2).rerank(query, cands)
        assert sorted(ranking.docids) == ["bread", "paris"] and ranking.usage.calls > 0
