"""Pure listwise algorithms (window arithmetic, sliding windows, TDPart) with a deterministic perfect
window ranker, and the parser of generated permutations over a table of malformed answers."""

from __future__ import annotations

import math
import random

import pytest

from rankwise.methods.permutation import (
    parse_permutation,
    sliding_windows,
    tdpart,
    window_spans,
)


class PerfectRanker:
    """Orders any window by a hidden relevance (higher first; ties by position in the window)."""

    def __init__(self, relevance: list[float]):
        self.relevance = relevance
        self.windows: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.windows.append(list(items))
        return sorted(items, key=lambda i: -self.relevance[i])


@pytest.mark.parametrize("n,size,step", [(100, 20, 10), (25, 20, 10), (21, 20, 10), (20, 20, 10), (7, 20, 10),
                                         (100, 20, 5), (50, 10, 10), (33, 4, 3)])
def test_the_number_of_windows(n, size, step):
    spans = window_spans(n, size, step)
    assert len(spans) == max(math.ceil((n - size) / step), 0) + 1
    assert spans[-1][0] == 0 and spans[0][1] == n  # back to front, from the bottom up to the top
    assert all(end - start == min(size, n) for start, end in spans)
    assert [s for s, _ in spans] == sorted((s for s, _ in spans), reverse=True)


def test_tiny_lists_need_no_window():
    assert window_spans(0, 20, 10) == [] and window_spans(1, 20, 10) == []


@pytest.mark.parametrize("seed", range(5))
def test_one_pass_finds_the_top_size_minus_step(seed):
    rng = random.Random(seed)
    relevance = [rng.random() for _ in range(100)]
    ranker = PerfectRanker(relevance)
    order = sliding_windows(100, 20, 10, ranker)
    assert sorted(order) == list(range(100))
    assert order[:10] == sorted(range(100), key=lambda i: -relevance[i])[:10]
    assert len(ranker.windows) == 9


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [15, 20, 45, 100])
def test_tdpart_finds_the_top_cutoff_with_an_unlimited_buffer(seed, n):
    rng = random.Random(seed)
    relevance = [rng.random() for _ in range(n)]
    order = tdpart(n, 20, 10, n, PerfectRanker(relevance))
    assert sorted(order) == list(range(n))
    assert order[:10] == sorted(range(n), key=lambda i: -relevance[i])[:10]


def test_tdpart_refines_the_head_when_candidates_overflow_the_buffer():
    # relevance rises down the list: every later window beats the pivot, so candidates pile up
    relevance = [float(i) for i in range(60)]
    ranker = PerfectRanker(relevance)
    order = tdpart(60, 10, 5, 12, ranker)
    assert sorted(order) == list(range(60))
    assert len(order[:5]) == 5 and order[:5] == sorted(order[:5], key=lambda i: -relevance[i])
    assert all(len(w) <= 10 for w in ranker.windows)
    assert len(ranker.windows) >= 3  # a first window, partition windows, then the refined head


def test_tdpart_stops_after_one_window_when_nothing_beats_the_pivot():
    relevance = [float(-i) for i in range(40)]  # already ideal
    ranker = PerfectRanker(relevance)
    assert tdpart(40, 20, 10, 20, ranker) == list(range(40))
    assert len(ranker.windows) == 3  # the first window, then 20 items in windows of 19 beside the pivot


def test_tdpart_rejects_bad_settings():
    with pytest.raises(ValueError, match="cutoff"):
        tdpart(10, 5, 5, 10, PerfectRanker([0.0] * 10))
    with pytest.raises(ValueError, match="buffer"):
        tdpart(10, 5, 3, 2, PerfectRanker([0.0] * 10))


def test_a_ranker_that_loses_items_is_an_error():
    with pytest.raises(ValueError, match="exactly the items"):
        sliding_windows(5, 5, 2, lambda items: items[:-1])


NUMBERS = ["1", "2", "3"]


@pytest.mark.parametrize("text,order,repaired", [
    ("[3] > [1] > [2]", [2, 0, 1], False),
    ("3, 1, 2", [2, 0, 1], False),
    ("3 > 1 > 2", [2, 0, 1], False),
    ("[ 3 ] > [01] > [2]", [2, 0, 1], False),
    ("", [0, 1, 2], True),  # empty: input order
    ("I cannot rank these.", [0, 1, 2], True),
    ("[2] > [2] > [1] > [3]", [1, 0, 2], True),  # repeated id dropped
    ("[4] > [3] > [0] > [1] > [2]", [2, 0, 1], True),  # out-of-range ids dropped
    ("[3] > [1]", [2, 0, 1], True),  # missing id appended
    ("[2]", [1, 0, 2], True),  # missing ids appended in input order
    ("Here is the ranking of the 3 passages: [3] > [1] > [2]. Hope it helps!", [2, 0, 1], False),
    ("Ranking:\n[2] > [3] > [1]\n", [1, 2, 0], False),
])
def test_permutations_are_parsed_robustly(text, order, repaired):
    parsed = parse_permutation(text, NUMBERS, r"\[\s*(\d+)\s*\]")
    assert parsed.order == order and parsed.repaired is repaired


@pytest.mark.parametrize("text,order,repaired", [
    ("[C] > [A] > [B]", [2, 0, 1], False),
    ("C > A > B", [2, 0, 1], False),
    ("[c] > [a] > [b]", [2, 0, 1], False),
    ("[C] > [Z] > [A] > [A]", [2, 0, 1], True),
])
def test_alphabetic_permutations_are_parsed(text, order, repaired):
    parsed = parse_permutation(text, ["A", "B", "C"], r"\[\s*([A-Za-z])\s*\]")
    assert parsed.order == order and parsed.repaired is repaired
