"""The comparison algorithms as pure functions: orders, comparison counts, batching, ties (milliseconds)."""

from __future__ import annotations

import math
import random

import pytest

from rankwise.methods import sorting


class Counted:
    """A perfect comparator over values (ties: undecided) that counts comparisons and batches."""

    def __init__(self, values):
        self.values = values
        self.comparisons = 0
        self.batches = 0
        self.groups = 0

    def prefer(self, pairs):
        self.batches += 1
        self.comparisons += len(pairs)
        v = self.values
        return [1.0 if v[a] > v[b] else 0.0 if v[a] < v[b] else 0.5 for a, b in pairs]

    def select(self, groups):
        self.batches += 1
        self.groups += len(groups)
        return [max(g, key=lambda i: (self.values[i], -i)) for g in groups]


def ideal(values):
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def graded(n, seed, levels=4):
    rng = random.Random(seed)
    return [rng.randrange(levels) for _ in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 20])
def test_allpairs_compares_every_pair_once_in_one_batch(n):
    c = Counted(graded(n, n))
    scores = sorting.allpairs_scores(n, c.prefer)
    assert sorted(range(n), key=lambda i: -scores[i]) == ideal(c.values)
    assert c.comparisons == n * (n - 1) // 2 and c.batches == (1 if n > 1 else 0)
    assert sum(scores) == pytest.approx(n * (n - 1) / 2)


@pytest.mark.parametrize("n,k", [(20, 10), (20, 19), (9, 3), (2, 1)])
def test_sliding_sorts_the_top_k_with_k_times_n_minus_1_comparisons(n, k):
    c = Counted(graded(n, k))
    order = sorting.sliding_order(n, c.prefer, k)
    assert order[:k] == ideal(c.values)[:k] and sorted(order) == list(range(n))
    assert c.comparisons == k * (n - 1)


@pytest.mark.parametrize("bottom_up", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 20, 31, 64, 100])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_pairwise_heap_sort_finds_the_top_k_within_the_bound(n, k, bottom_up):
    c = Counted(graded(n, n * k, levels=100))
    order = sorting.heap_top_k(n, sorting.knockout(c.prefer), k, bottom_up=bottom_up)
    top = min(k, n)
    assert order[:top] == ideal(c.values)[:top]
    assert order[top:] == sorted(order[top:]) and sorted(order) == list(range(n))
    assert c.comparisons <= 2 * sorting.heap_bound(n, k)
    # O(N + k log N), spelled out for a binary heap
    assert c.comparisons <= 2 * (n + k * math.ceil(math.log2(max(n, 2))))


def test_bottom_up_extraction_needs_fewer_comparisons():
    counts = {}
    for bottom_up in (False, True):
        total = 0
        for seed in range(30):
            c = Counted(graded(20, seed))
            sorting.heap_top_k(20, sorting.knockout(c.prefer), 10, bottom_up=bottom_up)
            total += c.comparisons
        counts[bottom_up] = total
    assert counts[True] < 0.9 * counts[False]


def test_heap_build_batches_one_heap_depth_per_step():
    n = 63  # a perfect binary heap: internal nodes at depths 0..4
    c = Counted(list(range(n)))  # ascending: every sift goes all the way down
    sorting.heap_top_k(n, sorting.knockout(c.prefer), 1)
    # a sift from depth d takes 5-d steps of 2 knockout rounds, and the sifts of one depth run together
    assert c.batches == 2 * sum(range(1, 6))
    assert c.comparisons > 2 * c.batches  # most batches hold many comparisons


@pytest.mark.parametrize("arity", [2, 3, 4])
@pytest.mark.parametrize("n,k", [(20, 10), (30, 5), (4, 4), (1, 1)])
def test_setwise_heap_sort_finds_the_top_k_within_the_bound(arity, n, k):
    c = Counted(graded(n, arity, levels=6))
    order = sorting.heap_top_k(n, c.select, k, arity=arity)
    assert order[:k] == ideal(c.values)[:k] and sorted(order) == list(range(n))
    assert c.groups <= sorting.heap_bound(n, k, arity)


@pytest.mark.parametrize("window", [2, 3, 4])
@pytest.mark.parametrize("n,k", [(20, 10), (10, 10), (5, 1), (1, 3)])
def test_bubble_sort_finds_the_top_k_with_the_expected_prompts(window, n, k):
    c = Counted(graded(n, window, levels=5))
    order = sorting.bubble_top_k(n, c.select, k, window)
    top = min(k, n)
    assert order[:top] == ideal(c.values)[:top] and sorted(order) == list(range(n))
    assert c.groups == sorting.bubble_calls(n, k, window)


def test_bubble_calls_formula_matches_setwise_windows():
    assert sorting.bubble_calls(20, 1, 4) == math.ceil(19 / 3)  # one pass: windows of 4, stride 3
    assert sorting.bubble_calls(20, 10, 4) == sum(math.ceil((19 - p) / 3) for p in range(10))


def test_undecided_comparisons_keep_the_input_order():
    n = 13
    c = Counted([0] * n)
    assert sorted(range(n), key=lambda i: -sorting.allpairs_scores(n, c.prefer)[i]) == list(range(n))
    assert sorting.sliding_order(n, c.prefer, 5) == list(range(n))
    assert sorting.heap_top_k(n, sorting.knockout(c.prefer), 5) == list(range(n))
    assert sorting.heap_top_k(n, sorting.knockout(c.prefer), 5, bottom_up=True) == list(range(n))
    assert sorting.heap_top_k(n, c.select, 5, arity=3) == list(range(n))
    assert sorting.bubble_top_k(n, c.select, 5, 4) == list(range(n))


@pytest.mark.parametrize("seed", range(20))
def test_an_incoherent_comparator_never_drops_or_duplicates(seed):
    rng = random.Random(seed)
    n = rng.randrange(1, 30)
    prefer = lambda pairs: [rng.choice([0.0, 0.5, 1.0]) for _ in pairs]  # noqa: E731
    select = lambda groups: [rng.choice(list(g)) for g in groups]  # noqa: E731
    for order in (sorting.sliding_order(n, prefer, 4), sorting.heap_top_k(n, sorting.knockout(prefer), 7),
                  sorting.heap_top_k(n, sorting.knockout(prefer), 7, bottom_up=True),
                  sorting.heap_top_k(n, select, 7, arity=3), sorting.bubble_top_k(n, select, 7, 3)):
        assert sorted(order) == list(range(n))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_knockout_needs_g_minus_1_comparisons_in_log_rounds(size):
    c = Counted([3, 1, 4, 1, 5, 9, 2, 6])
    groups = [list(range(size)), list(range(size))[::-1]]
    winners = sorting.knockout(c.prefer)(groups)
    assert winners == [max(range(size), key=lambda i: (c.values[i], -i))] * 2
    assert c.comparisons == 2 * (size - 1) and c.batches == math.ceil(math.log2(size))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        sorting.heap_top_k(3, lambda g: [x[0] for x in g], 1, arity=1)
    with pytest.raises(ValueError):
        sorting.bubble_top_k(3, lambda g: [x[0] for x in g], 1, window=1)
