"""Global orders aggregated from comparisons, as pure functions over a batched comparator (no torch).

Items are the indices ``0..n-1`` in input order; ``Prefer`` and ``SelectBest`` are those of ``sorting``.

- ``preferences``: the preference matrix of all pairs, or a sparse band of them, in one batch;
- ``tsp_order``: the shortest path through the candidates, each step costing how differently two candidates
  compare with the rest and how much it goes against their own preference: a travelling-salesman path
  (TSPRank), solved exactly (Held-Karp) up to ``EXACT_MAX`` items and by local search beyond;
- ``bradley_terry``: strengths fitted to the preferences (Hunter's MM algorithm, regularised); ``completed``
  fills the pairs a sparse comparison set left out from that fit;
- ``tournament_scores``: TourRank, points for the rounds survived in seeded tournaments of groups.
"""

from __future__ import annotations

import math
import random
from itertools import combinations, pairwise
from typing import Sequence

import numpy as np

from rankwise.methods.sorting import Prefer, SelectBest

EXACT_MAX = 12  # Held-Karp holds 2^n * n states: 49k at 12 items, milliseconds with numpy
HEURISTIC = "2opt+oropt"
STARTS = 8  # greedy starts of the heuristic
TIE = 1e-9  # the cost of a step back in the input order: equal paths go to the input order


def band_pairs(n: int, width: int | None = None) -> list[tuple[int, int]]:
    """All pairs ``(a, b)``, a < b, or with ``width`` only those at most ``width`` apart in input order."""
    return [(a, b) for a, b in combinations(range(n), 2) if width is None or b - a <= width]


def preferences(n: int, prefer: Prefer, pairs: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """``P[a, b]``: a's share of the win over b from one batch of ``pairs`` (default all); a pair not
    compared is undecided (0.5 both ways); the diagonal is 0."""
    pairs = band_pairs(n) if pairs is None else list(pairs)
    p = np.full((n, n), 0.5)
    np.fill_diagonal(p, 0.0)
    for (a, b), share in zip(pairs, prefer(pairs) if pairs else []):
        p[a, b], p[b, a] = share, 1.0 - share
    return p


def path_costs(p: np.ndarray) -> np.ndarray:
    """The cost of the step from a to b: how differently a and b compare with every other candidate (the
    L1 distance of their rows of ``P``: neighbours in a good order beat and lose to the same candidates),
    plus ``max(0, P[b, a] - P[a, b])`` for stepping against the comparator's preference, plus ``TIE`` per
    position stepped back in the input order. Every term scales with the preferences, so a faint but
    consistent comparator orders as well as a sure one; for a perfect comparator the candidates lie on a
    line, and its order is the shortest path. O(n^3) time, O(n^2) memory."""
    n = len(p)
    q = p.copy()
    np.fill_diagonal(q, 0.5)
    distance = np.stack([np.abs(row - q).sum(axis=1) for row in q]) - 2 * np.abs(q - 0.5)  # without columns a, b
    against = np.maximum(0.0, p.T - p)
    back = np.arange(n)[:, None] - np.arange(n)[None, :]
    return distance + against + TIE * np.maximum(back, 0)


def path_cost(order: Sequence[int], cost: np.ndarray) -> float:
    """The total cost of the consecutive steps of ``order``."""
    return float(sum(cost[a, b] for a, b in pairwise(order)))


def tsp_order(p: np.ndarray, exact_max: int = EXACT_MAX) -> tuple[list[int], str]:
    """The minimum-cost Hamiltonian path over ``path_costs(p)`` and the solver that found it:
    ``"held-karp"`` (exact) for n <= ``exact_max``, else ``HEURISTIC``: local search from ``STARTS`` + 1 starts
    (greedy from each of the items that win most, and the order by wins), the cheapest result."""
    cost = path_costs(p)
    n = len(cost)
    if n <= 2:
        order = list(range(n))
        return (order if n < 2 or cost[0, 1] <= cost[1, 0] else [1, 0]), "held-karp"
    if n <= exact_max:
        return held_karp(cost), "held-karp"
    wins = p.sum(axis=1)
    by_wins = sorted(range(n), key=lambda i: -wins[i])
    starts = [greedy_path(cost, first) for first in by_wins[:STARTS]] + [by_wins]
    return min((local_search(cost, s) for s in starts), key=lambda o: path_cost(o, cost)), HEURISTIC


def held_karp(cost: np.ndarray) -> list[int]:
    """The exact minimum-cost open path (any start, any end) by dynamic programming over subsets:
    ``best[S, j]`` is the cheapest path through the set S ending at j. O(2^n · n^2)."""
    n = len(cost)
    full = 1 << n
    best = np.full((full, n), np.inf)
    back = np.full((full, n), -1, dtype=np.int64)
    for j in range(n):
        best[1 << j, j] = 0.0
    bits = 1 << np.arange(n)
    for mask in range(1, full):
        ends = best[mask]
        if not np.isfinite(ends).any():
            continue
        step = ends[:, None] + cost  # step[j, k]: the path ending at j, then on to k
        prev = np.argmin(step, axis=0)
        value = step[prev, np.arange(n)]
        for k in np.flatnonzero((mask & bits) == 0):
            nxt = mask | (1 << k)
            if value[k] < best[nxt, k]:
                best[nxt, k], back[nxt, k] = value[k], prev[k]
    mask, end = full - 1, int(np.argmin(best[full - 1]))
    order = []
    while end >= 0:
        order.append(end)
        mask, end = mask ^ (1 << end), int(back[mask, end])
    return order[::-1]


def greedy_path(cost: np.ndarray, first: int) -> list[int]:
    """A start for local search: from ``first``, always the cheapest next step."""
    n = len(cost)
    path = [first]
    left = set(range(n)) - set(path)
    while left:
        here = path[-1]
        nxt = min(left, key=lambda k: (cost[here, k], k))
        path.append(nxt)
        left.remove(nxt)
    return path


def local_search(cost: np.ndarray, start: Sequence[int], max_rounds: int = 100) -> list[int]:
    """Improve an open path until no move helps: 2-opt (reverse a segment; on these asymmetric costs its
    inside runs backwards) and Or-opt (move a run of 1-3 items elsewhere, same direction)."""
    path = list(start)
    for _ in range(max_rounds):
        if not (_two_opt(path, cost) or _or_opt(path, cost)):
            break
    return path


def _two_opt(path: list[int], cost: np.ndarray) -> bool:
    n = len(path)
    fwd = np.concatenate([[0.0], np.cumsum([cost[a, b] for a, b in pairwise(path)])])
    bwd = np.concatenate([[0.0], np.cumsum([cost[b, a] for a, b in pairwise(path)])])
    for i in range(n - 1):
        for j in range(i + 1, n):
            old = fwd[j] - fwd[i]
            new = bwd[j] - bwd[i]
            if i > 0:
                old += cost[path[i - 1], path[i]]
                new += cost[path[i - 1], path[j]]
            if j < n - 1:
                old += cost[path[j], path[j + 1]]
                new += cost[path[i], path[j + 1]]
            if new < old - 1e-12:
                path[i:j + 1] = path[i:j + 1][::-1]
                return True
    return False


def _or_opt(path: list[int], cost: np.ndarray) -> bool:
    n = len(path)

    def link(a: int | None, b: int | None) -> float:
        return 0.0 if a is None or b is None else float(cost[a, b])

    for length in (1, 2, 3):
        for i in range(n - length + 1):
            first, last = path[i], path[i + length - 1]
            before = path[i - 1] if i > 0 else None
            after = path[i + length] if i + length < n else None
            gain = link(before, first) + link(last, after) - link(before, after)
            rest = path[:i] + path[i + length:]
            for at in range(len(rest) + 1):
                if at == i:
                    continue
                x = rest[at - 1] if at > 0 else None
                y = rest[at] if at < len(rest) else None
                if link(x, first) + link(last, y) - link(x, y) < gain - 1e-12:
                    path[:] = rest[:at] + path[i:i + length] + rest[at:]
                    return True
    return False


def bradley_terry(p: np.ndarray, compared: np.ndarray | None = None, iterations: int = 50,
                  prior: float = 1.0) -> list[float]:
    """Log-strengths s with P(a beats b) = e^s_a / (e^s_a + e^s_b), fitted to the shares ``p`` over the
    ``compared`` pairs (default all) by Hunter's MM updates. ``prior``: each item also drew that many
    comparisons with a virtual item of strength 1, which keeps an unbeaten item's strength finite.
    Rounded to 9 digits so that equal records give equal scores (then the input order decides)."""
    n = len(p)
    mask = ~np.eye(n, dtype=bool) if compared is None else np.asarray(compared, dtype=bool) & ~np.eye(n, dtype=bool)
    wins = (p * mask).sum(axis=1) + prior / 2
    w = np.ones(n)
    for _ in range(iterations):
        w = wins / ((mask / (w[:, None] + w[None, :])).sum(axis=1) + prior / (w + 1.0))
    return np.round(np.log(w), 9).tolist()


def completed(p: np.ndarray, compared: np.ndarray) -> np.ndarray:
    """``p`` with the pairs not ``compared`` filled in by a Bradley-Terry fit to those compared."""
    s = np.array(bradley_terry(p, compared))
    fitted = 1.0 / (1.0 + np.exp(s[None, :] - s[:, None]))
    out = np.where(compared, p, fitted)
    np.fill_diagonal(out, 0.0)
    return out


def _split(items: list[int], size: int) -> list[list[int]]:
    """``items`` in ceil(len/size) consecutive groups whose sizes differ by at most one."""
    count = math.ceil(len(items) / size)
    base, extra = divmod(len(items), count)
    groups, at = [], 0
    for g in range(count):
        width = base + (g < extra)
        groups.append(items[at:at + width])
        at += width
    return groups


def _advancing(size: int, advance: int) -> int:
    return min(advance, size - 1)


def tournament_scores(n: int, select_best: SelectBest, group_size: int = 4, advance: int = 2,
                      tournaments: int = 5, seed: int = 0) -> list[float]:
    """TourRank: each tournament shuffles the items (``random.Random(seed + t)``), splits them into groups
    of about ``group_size``, and the ``advance`` best of each group (at most its size minus one) go on to
    the next round, a point each, until one is left. A group's best are picked one ``select_best`` step at
    a time (the best, then the best of the rest); each step asks every group of the round of every
    tournament in one batch, each group in its shuffled order. Score: points over all tournaments."""
    if group_size < 2 or not 1 <= advance < group_size:
        raise ValueError("a tournament needs group_size >= 2 and 1 <= advance < group_size")
    scores = [0.0] * n
    alive = []
    for t in range(tournaments):
        items = list(range(n))
        random.Random(seed + t).shuffle(items)
        alive.append(items)
    while any(len(a) > 1 for a in alive):
        groups = [g for a in alive if len(a) > 1 for g in _split(a, group_size)]
        picked: list[list[int]] = [[] for _ in groups]
        for step in range(advance):
            asked = [gi for gi, g in enumerate(groups) if step < _advancing(len(g), advance)]
            if not asked:
                break
            rest = [[i for i in groups[gi] if i not in picked[gi]] for gi in asked]
            for gi, best in zip(asked, select_best(rest)):
                picked[gi].append(best)
        it = iter(picked)
        for t, a in enumerate(alive):
            if len(a) > 1:
                winners = [i for g in _split(a, group_size) for i in next(it)]
                alive[t] = sorted(winners, key=a.index)
                for i in winners:
                    scores[i] += 1.0
    return scores


def tournament_calls(n: int, group_size: int = 4, advance: int = 2, tournaments: int = 5) -> tuple[int, int]:
    """(groups asked, batches) of ``tournament_scores``: group sizes depend on n only, not on the shuffle."""
    asked = batches = 0
    while n > 1:
        sizes = [len(g) for g in _split(list(range(n)), group_size)]
        picks = [_advancing(s, advance) for s in sizes]
        asked += sum(picks)
        batches += max(picks)
        n = sum(picks)
    return asked * tournaments, batches if tournaments else 0
