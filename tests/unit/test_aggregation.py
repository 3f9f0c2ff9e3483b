"""TSP paths, Bradley-Terry fits and TourRank tournaments as pure functions, checked with oracles (no torch)."""

from __future__ import annotations

import math
import random
import sys
from itertools import permutations

import numpy as np
import pytest

from rankwise.methods import aggregation as ag
from rankwise.methods import sorting
from unit.test_sorting import Counted, graded, ideal


def distinct(n, seed):
    values = list(range(n))
    random.Random(seed).shuffle(values)
    return values


def random_preferences(n, seed, noise=1.0):
    """Shares from a Bradley-Terry model with random strengths, blurred by noise (not transitive)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    logits = s[:, None] - s[None, :] + noise * rng.normal(size=(n, n))
    upper = np.triu(1 / (1 + np.exp(-logits)), 1)
    p = upper + np.tril(1 - upper.T, -1)
    np.fill_diagonal(p, 0.0)
    return p


def dcg(values, order, k=10):
    return sum((2 ** values[i] - 1) / math.log2(r + 2) for r, i in enumerate(order[:k]))


def test_preferences_ask_all_pairs_or_a_band_in_one_batch():
    c = Counted(distinct(9, 0))
    p = ag.preferences(9, c.prefer)
    assert (c.comparisons, c.batches) == (36, 1)
    assert np.allclose(p + p.T, 1 - np.eye(9))
    c = Counted(distinct(9, 0))
    p = ag.preferences(9, c.prefer, ag.band_pairs(9, 2))
    assert (c.comparisons, c.batches) == (8 + 7, 1)  # neighbours 1 and 2 apart
    assert p[0, 5] == p[5, 0] == 0.5  # never compared: undecided


@pytest.mark.parametrize("n", range(1, 8))
def test_held_karp_matches_brute_force(n):
    for seed in range(3):
        cost = ag.path_costs(random_preferences(n, seed))
        best = min(ag.path_cost(order, cost) for order in permutations(range(n)))
        order = ag.held_karp(cost)
        assert sorted(order) == list(range(n))
        assert ag.path_cost(order, cost) == pytest.approx(best, abs=1e-12)


def test_the_heuristic_stays_close_to_the_exact_path():
    excess = []
    for seed in range(20):
        p = random_preferences(11, seed, noise=1.0)
        cost = ag.path_costs(p)
        exact, solver = ag.tsp_order(p)
        heuristic, other = ag.tsp_order(p, exact_max=0)
        assert (solver, other) == ("held-karp", ag.HEURISTIC) and sorted(heuristic) == list(range(11))
        excess.append(ag.path_cost(heuristic, cost) / ag.path_cost(exact, cost) - 1)
    assert min(excess) >= -1e-9
    assert max(excess) <= 0.05 and sum(excess) / len(excess) <= 0.01


@pytest.mark.parametrize("exact_max", [0, ag.EXACT_MAX])
@pytest.mark.parametrize("n", [2, 5, 12, 25])
def test_a_perfect_comparator_gives_the_ideal_path(n, exact_max):
    for values in (distinct(n, n), graded(n, n)):
        c = Counted(values)
        order, solver = ag.tsp_order(ag.preferences(n, c.prefer), exact_max=exact_max)
        assert [values[i] for i in order] == sorted(values, reverse=True)  # ideal; equal values in any order
        assert order == ideal(values) or len(set(values)) < n
        assert solver == ("held-karp" if n <= min(exact_max, ag.EXACT_MAX) or n <= 2 else ag.HEURISTIC)


@pytest.mark.parametrize("n", [1, 6, 20])
def test_undecided_comparisons_keep_the_input_order(n):
    c = Counted([0] * n)
    p = ag.preferences(n, c.prefer)
    assert ag.tsp_order(p)[0] == list(range(n))
    scores = ag.bradley_terry(p)
    assert sorted(range(n), key=lambda i: -scores[i]) == list(range(n))


def test_a_sparse_band_still_orders_a_sorted_input():
    values = list(range(15, 0, -1))  # the input is already in order: neighbours carry the whole order
    c = Counted(values)
    order, _ = ag.tsp_order(ag.preferences(15, c.prefer, ag.band_pairs(15, 1)), exact_max=0)
    assert order == list(range(15)) and c.comparisons == 14


@pytest.mark.parametrize("n", [3, 10, 20])
def test_bradley_terry_orders_a_perfect_comparator_like_its_wins(n):
    values = graded(n, n)
    scores = ag.bradley_terry(ag.preferences(n, Counted(values).prefer))
    assert sorted(range(n), key=lambda i: -scores[i]) == ideal(values)


def test_bradley_terry_recovers_known_strengths():
    rng = np.random.default_rng(7)
    strengths = np.sort(rng.normal(scale=1.5, size=12))[::-1]
    p = 1 / (1 + np.exp(-(strengths[:, None] - strengths[None, :])))
    np.fill_diagonal(p, 0.0)
    scores = np.array(ag.bradley_terry(p, iterations=500, prior=0.01))
    assert list(np.argsort(-scores)) == list(range(12))
    assert np.allclose(scores - scores.mean(), strengths - strengths.mean(), atol=0.05)


def test_bradley_terry_uses_strengths_that_wins_throw_away():
    # a beats b narrowly, b beats c narrowly, c beats a by a mile: wins tie 1-1-1, strengths do not
    p = np.array([[0, 0.55, 0.05], [0.45, 0, 0.55], [0.95, 0.45, 0]])
    hard = np.where(p > 0.5, 1.0, 0.0) * (1 - np.eye(3))
    assert len(set(hard.sum(axis=1))) == 1
    scores = ag.bradley_terry(p)
    assert max(range(3), key=lambda i: scores[i]) == 2


def test_bradley_terry_over_a_sparse_set_of_pairs():
    values = list(range(10))
    p = ag.preferences(10, Counted(values).prefer, ag.band_pairs(10, 2))
    compared = np.abs(p - 0.5) > 0  # a band: each item met its neighbours only
    scores = ag.bradley_terry(p, compared, iterations=200)
    assert sorted(range(10), key=lambda i: -scores[i]) == ideal(values)


def test_completed_fills_the_pairs_not_compared_from_bradley_terry():
    values = list(range(12, 0, -1))
    pairs = ag.band_pairs(12, 2)
    p = ag.preferences(12, Counted(values).prefer, pairs)
    compared = np.abs(p - 0.5) > 0
    full = ag.completed(p, compared)
    assert np.array_equal(full[compared], p[compared]) and np.allclose(full + full.T, 1 - np.eye(12))
    assert all(full[a, b] > 0.5 for a in range(12) for b in range(a + 3, 12))  # far pairs: the fitted order
    assert ag.tsp_order(full, exact_max=0)[0] == list(range(12))


@pytest.mark.parametrize("n,group_size,advance", [(10, 4, 2), (20, 4, 2), (20, 5, 1), (7, 3, 2), (2, 4, 2), (1, 4, 2)])
def test_tournament_call_counts_follow_the_formula(n, group_size, advance):
    c = Counted(distinct(n, 3))
    scores = ag.tournament_scores(n, c.select, group_size, advance, tournaments=3, seed=5)
    groups, batches = ag.tournament_calls(n, group_size, advance, tournaments=3)
    assert (c.groups, c.batches) == (groups, batches)
    assert len(scores) == n and sum(scores) == groups  # a point per pick


def test_tournament_counts_for_top_10():
    # 10 -> groups 4,3,3 keep 2 each -> 6 -> 3,3 -> 4 -> 4 -> 2 -> 2 -> 1: 6 + 4 + 2 + 1 picks, 7 steps
    assert ag.tournament_calls(10, 4, 2, 1) == (13, 7)
    assert ag.tournament_calls(10, 4, 2, 5) == (65, 7)  # tournaments run side by side: same steps


def test_a_perfect_judge_wins_every_tournament_and_the_order_is_close_to_ideal():
    for seed in range(10):
        values = graded(20, seed, levels=4)
        scores = ag.tournament_scores(20, Counted(values).select, tournaments=5, seed=seed)
        order = sorted(range(20), key=lambda i: -scores[i])
        best = ideal(values)[0]
        assert scores[best] == max(scores) and values[order[0]] == values[best]
        assert dcg(values, order) >= 0.9 * dcg(values, ideal(values))


def test_tournament_points_do_not_depend_on_the_input_order_in_expectation():
    n, runs = 10, 300
    values = distinct(n, 1)
    expected = np.array(ag.tournament_scores(n, Counted(values).select, tournaments=runs)) / runs
    perm = distinct(n, 2)  # shown in another order: item perm[j] at position j
    shown = [values[i] for i in perm]
    again = np.array(ag.tournament_scores(n, Counted(shown).select, tournaments=runs, seed=99)) / runs
    assert np.allclose(expected[perm], again, atol=0.25)
    assert sorted(range(n), key=lambda i: -expected[i]) == ideal(values)


class PositionBiased:
    """A setwise judge that picks the candidate shown first with probability ``bias``, else the best."""

    def __init__(self, values, bias, seed):
        self.values, self.bias, self.rng = values, bias, random.Random(seed)

    def select(self, groups):
        return [g[0] if self.rng.random() < self.bias else max(g, key=lambda i: self.values[i]) for g in groups]

    def select_sorted(self, groups):  # as setwise shows a group: in input order
        return self.select([sorted(g) for g in groups])


def test_tournaments_hold_their_quality_under_shuffled_input_where_heap_sort_drops():
    n, gaps = 20, {"tournament": [], "heapsort": []}
    for seed in range(15):
        values = graded(n, seed, levels=4)
        ranked = ideal(values)  # the first stage's order: the best first
        for name, shuffle in (("kept", False), ("shuffled", True)):
            perm = distinct(n, seed + 100) if shuffle else ranked
            shown = [values[i] for i in perm]
            judge = PositionBiased(shown, bias=0.4, seed=seed)
            scores = ag.tournament_scores(n, judge.select, tournaments=5, seed=seed)
            tour = sorted(range(n), key=lambda i: -scores[i])
            heap = sorting.heap_top_k(n, PositionBiased(shown, 0.4, seed).select_sorted, 10, arity=3)
            for key, order in (("tournament", tour), ("heapsort", heap)):
                gaps[key].append((name, dcg(shown, order) / dcg(shown, ideal(shown))))
    drop = {k: np.mean([q for s, q in v if s == "kept"]) - np.mean([q for s, q in v if s == "shuffled"])
            for k, v in gaps.items()}
    print(drop, file=sys.stderr)
    assert drop["heapsort"] > 0.05 and abs(drop["tournament"]) < 0.02


def test_bad_tournament_shapes_are_rejected():
    with pytest.raises(ValueError):
        ag.tournament_scores(5, lambda g: [x[0] for x in g], group_size=1)
    with pytest.raises(ValueError):
        ag.tournament_scores(5, lambda g: [x[0] for x in g], group_size=3, advance=3)
