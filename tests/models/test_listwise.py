"""Listwise methods (sliding windows, FIRST, full list, InsertRank, TDPart): a perfect judge on real DL19
candidates, exact window counts, parse repairs, context overflow, identifier tokens, then the real
transformers code paths (a tiny random model) and a real small model (slow)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from rankwise.data import load_dataset
from rankwise.errors import InputError
from rankwise.methods import build_method
from rankwise.pipeline import run
from rankwise.types import Candidate, Query
from tests.listwise_oracle import ListwiseOracle, listwise_oracle
from tests.oracle import assert_head_reranked, ideal_run, ndcg10
from tests.tiny_lm import tiny_backend

N, QUERIES = 40, 5
METHODS = ["listwise.window", "listwise.first", "listwise.full", "listwise.insertrank", "listwise.tdpart"]


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    return ds.requests("bm25", top_k=N)[:QUERIES], ds.qrels


def synthetic(n: int) -> tuple[list[Candidate], dict[str, int]]:
    cands = [Candidate(f"d{i}", f"passage number {i} about topic {i % 7}", score=30.0 - i / 3) for i in range(n)]
    return cands, {c.text: (i * 7) % 4 for i, c in enumerate(cands)}


@pytest.mark.parametrize("split_digits", [False, True])  # "[1" one token (answer prefix "") or two ("[")
@pytest.mark.parametrize("method", METHODS)
def test_a_perfect_judge_gives_the_ideal_ranking(dl19_requests, method, split_digits):
    requests, qrels = dl19_requests
    backend = listwise_oracle(requests, qrels, split_digits=split_digits)
    result = run(build_method(method, backend) % N, requests)
    assert ndcg10(result.run(), requests, qrels) == pytest.approx(ndcg10(ideal_run(requests, qrels), requests, qrels))
    assert result.usage.parse_failures == 0


@pytest.mark.parametrize("method", ["listwise.window", "listwise.first", "listwise.insertrank"])
@pytest.mark.parametrize("n,size,step", [(100, 20, 10), (45, 20, 10), (21, 20, 10), (20, 20, 10), (9, 20, 10),
                                         (30, 10, 5)])
def test_one_backend_call_per_window(method, n, size, step):
    cands, grades = synthetic(n)
    backend = ListwiseOracle(grades)
    ranking = build_method(method, backend, window_size=size, step=step).rerank(Query("q", "x"), cands)
    windows = math.ceil((n - size) / step) + 1 if n > size else 1
    assert ranking.usage.calls == windows == backend.usage.forward_passes
    assert sorted(ranking.docids) == sorted(c.docid for c in cands)
    best = sorted(cands, key=lambda c: -grades[c.text])[: size - step]
    assert [grades[c.text] for c in ranking.candidates[: size - step]] == [grades[c.text] for c in best]


def test_the_full_list_is_one_call():
    cands, grades = synthetic(60)
    backend = ListwiseOracle(grades)
    ranking = build_method("listwise.full", backend).rerank(Query("q", "x"), cands)
    assert ranking.usage.calls == 1
    assert backend.max_new_tokens == [5 * 60 + 4]
    assert [grades[c.text] for c in ranking.candidates] == sorted(grades.values(), reverse=True)


def test_a_list_too_long_for_the_context_is_an_error_or_windows():
    cands, grades = synthetic(60)
    with pytest.raises(InputError, match="max_context=500"):
        build_method("listwise.full", ListwiseOracle(grades), max_context=500).rerank(Query("q", "x"), cands)
    backend = ListwiseOracle(grades)
    ranking = build_method("listwise.full", backend, max_context=500, overflow="window").rerank(Query("q", "x"), cands)
    assert ranking.usage.calls == math.ceil((60 - 20) / 10) + 1


def test_malformed_permutations_are_repaired_and_counted():
    cands, grades = synthetic(45)
    backend = ListwiseOracle(grades, malformed_every=2)
    ranking = build_method("listwise.window", backend).rerank(Query("q", "x"), cands)
    assert ranking.usage.parse_failures == 2 == backend.generated // 2
    assert sorted(ranking.docids) == sorted(c.docid for c in cands)


def test_reasoning_windows_read_only_the_answer_section():
    """ReasonRank's format: the thoughts name identifiers too (the worst first); only <answer> counts."""
    cands, grades = synthetic(12)
    backend = ListwiseOracle(grades)
    method = build_method("listwise.window", backend, prompt="listwise.reasonrank", window_size=6, step=3,
                          reasoning_tokens=64)
    assert method.answer_prefix == "<think>"
    ranking = method.rerank(Query("q", "x"), cands)
    assert [grades[c.text] for c in ranking.candidates[:3]] == sorted(grades.values(), reverse=True)[:3]
    assert ranking.usage.parse_failures == 0 and set(backend.max_new_tokens) == {64 + 5 * 6 + 4}
    unanswered = build_method("listwise.window", ListwiseOracle(grades, malformed_every=1),
                              prompt="listwise.reasonrank", window_size=12, step=6, reasoning_tokens=64)
    ranking = unanswered.rerank(Query("q", "x"), cands)  # no <answer>: the window keeps its order, one failure
    assert ranking.docids == [c.docid for c in cands] and ranking.usage.parse_failures == 1
    with pytest.raises(InputError, match="reasoning_tokens"):
        build_method("listwise.first", backend, reasoning_tokens=8)


def rising(n: int) -> tuple[list[Candidate], dict[str, int]]:
    """Candidates whose true order is exactly the input reversed (grades 0..n-1 down the list)."""
    cands = [Candidate(f"d{i}", f"passage {i}") for i in range(n)]
    return cands, {c.text: i for i, c in enumerate(cands)}


def test_a_window_answered_backwards_keeps_the_input_order_and_counts_as_a_failure():
    cands, grades = rising(10)  # the oracle's answer is "[10] > [9] > ... > [1]": a small model's countdown
    ranking = build_method("listwise.window", ListwiseOracle(grades)).rerank(Query("q", "x"), cands)
    assert ranking.docids == [c.docid for c in cands]
    assert ranking.usage.parse_failures == 1
    accepted = build_method("listwise.window", ListwiseOracle(grades), countdown="accept").rerank(Query("q", "x"), cands)
    assert accepted.docids == [c.docid for c in reversed(cands)]
    assert accepted.usage.parse_failures == 0
    short, short_grades = rising(4)  # four passages reversed can be a real judgement
    four = build_method("listwise.window", ListwiseOracle(short_grades)).rerank(Query("q", "x"), short)
    assert four.docids == [c.docid for c in reversed(short)] and four.usage.parse_failures == 0


@pytest.mark.parametrize("method", ["listwise.window", "listwise.first"])
def test_windows_answered_in_the_order_shown_are_counted(method):
    cands, grades = synthetic(45)
    ideal = sorted(cands, key=lambda c: -grades[c.text])
    echoed = build_method(method, ListwiseOracle(grades)).rerank(Query("q", "x"), ideal)  # shown in its true order
    assert echoed.usage.windows == 4 == echoed.usage.unchanged_windows
    reordered = build_method(method, ListwiseOracle(grades)).rerank(Query("q", "x"), cands)
    assert reordered.usage.windows == 4 and reordered.usage.unchanged_windows < 4
    repaired = build_method("listwise.window", ListwiseOracle(grades, malformed_every=1)).rerank(Query("q", "x"), ideal)
    assert repaired.usage.parse_failures == 4 == repaired.usage.unchanged_windows  # prose: nothing reordered


def test_insertrank_shows_the_first_stage_scores():
    method = build_method("listwise.insertrank", ListwiseOracle({}))
    prompt = method.prompt("q", ["one", "two"], [12.3456, 7.0])
    assert "[1] (BM25 score: 12.35) one\n[2] (BM25 score: 7.00) two" in prompt
    assert "Search Query: q." in prompt


def test_window_prompts_number_the_passages_and_first_uses_letters():
    prompt = build_method("listwise.window", ListwiseOracle({})).prompt("q", ["one", "two"])
    assert "I will provide you with 2 passages" in prompt and "[1] one\n[2] two" in prompt
    first = build_method("listwise.first", ListwiseOracle({}))
    assert "[A] one\n[B] two" in first.prompt("q", ["one", "two"])


class Tokens(ListwiseOracle):
    """An oracle whose tokenizer splits "[" from letters and spells some letters in two tokens."""

    def __init__(self, several: str = ""):
        super().__init__({})
        self.several = several

    def count_tokens(self, text: str) -> int:
        return sum(2 if ch in self.several else 1 for ch in text)


def test_first_identifiers_are_single_tokens():
    merged = build_method("listwise.first", ListwiseOracle({}))  # "[A" is one token, as in Qwen
    assert (merged.answer_prefix, merged.choices[:2]) == ("", ["[A", "[B"])
    split = build_method("listwise.first", Tokens())  # "[" + "A", as in SmolLM2
    assert (split.answer_prefix, split.choices[:2]) == ("[", ["A", "B"])
    with pytest.raises(InputError, match="single-token identifiers; Q, R"):
        build_method("listwise.first", Tokens(several="QR"))


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="mode"):
        build_method("listwise.window", ListwiseOracle({}), mode="sample")
    with pytest.raises(InputError, match="window_size"):
        build_method("listwise.window", ListwiseOracle({}), window_size=10, step=20)
    with pytest.raises(InputError, match="cutoff"):
        build_method("listwise.tdpart", ListwiseOracle({}), cutoff=20)
    with pytest.raises(InputError, match="labels='alpha'"):
        build_method("listwise.first", ListwiseOracle({}), labels="numeric")
    with pytest.raises(InputError, match="at most 26"):
        build_method("listwise.first", ListwiseOracle({}), window_size=30)
    with pytest.raises(InputError, match="overflow"):
        build_method("listwise.full", ListwiseOracle({}), overflow="truncate")
    with pytest.raises(InputError, match="countdown"):
        build_method("listwise.window", ListwiseOracle({}), countdown="reverse")


def test_first_and_generated_windows_rank_alike_on_letters():
    cands, grades = synthetic(45)
    generated = build_method("listwise.window", ListwiseOracle(grades), labels="alpha").rerank(Query("q", "x"), cands)
    scored = build_method("listwise.first", ListwiseOracle(grades)).rerank(Query("q", "x"), cands)
    assert generated.docids == scored.docids
    assert scored.usage.completion_tokens == 0 < generated.usage.completion_tokens


def test_top_k_reranks_the_head_and_keeps_the_tail_in_order():
    cands, grades = synthetic(30)
    for name in METHODS:
        ranking = build_method(name, ListwiseOracle(grades)).rerank(Query("q", "x"), cands, top_k=22)
        assert_head_reranked(ranking, cands, 22)


def test_equal_passages_keep_the_input_order():
    cands = [Candidate(f"d{i}", f"passage number {i}") for i in range(25)]
    for name in METHODS:
        ranking = build_method(name, ListwiseOracle({c.text: 2 for c in cands})).rerank(Query("q", "x"), cands)
        assert ranking.docids == [c.docid for c in cands]


def test_no_candidates_and_one_candidate():
    one = [Candidate("d0", "only passage")]
    for name in METHODS:
        method = build_method(name, ListwiseOracle({"only passage": 1}))
        assert method.rerank(Query("q", "x"), []).docids == []
        ranking = method.rerank(Query("q", "x"), one)
        assert ranking.docids == ["d0"] and ranking.usage.calls == 0


@pytest.mark.parametrize("method", METHODS)
def test_every_listwise_method_runs_on_a_real_transformer(method):
    backend = tiny_backend(dtype="float32")
    cands = [Candidate(f"d{i}", f"the capital of France is Paris {i}", score=float(9 - i)) for i in range(9)]
    ranking = build_method(method, backend, window_size=4, step=2, cutoff=2, buffer=4,
                           tokens_per_item=2).rerank(Query("q", "capital of France"), cands)
    assert sorted(ranking.docids) == sorted(c.docid for c in cands)
    assert np.isfinite(ranking.scores).all() and ranking.usage.calls > 0
    if method != "listwise.first":  # a random model writes no permutation: every answer is repaired
        assert ranking.usage.parse_failures > 0 and ranking.usage.completion_tokens > 0


@pytest.fixture(scope="module")
def smollm2():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from rankwise.llm import load_backend

    return load_backend("smollm2-135m", engine="transformers")


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_real_small_model_ranks_one_dl19_query(dl19_requests, smollm2, method):
    requests, qrels = dl19_requests
    request = requests[0]
    ranking = build_method(method, smollm2, window_size=6, step=3, cutoff=3, buffer=6,
                           max_passage_tokens=64).rerank(request.query, request.candidates, top_k=10)
    assert sorted(ranking.docids) == sorted(c.docid for c in request.candidates)
    assert ranking.usage.calls > 0 and ranking.usage.prompt_tokens > 0
    print(method, ranking.usage.to_dict())
