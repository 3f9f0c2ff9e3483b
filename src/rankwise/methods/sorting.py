"""Comparison-based ranking algorithms as pure functions over a batched comparator.

Items are the indices ``0..n-1`` of the candidates in input order. Two kinds of comparator:

- ``Prefer``: a batch of pairs ``(a, b)`` -> the share of a win that ``a`` takes from ``b`` (1, 0, or 0.5
  for "undecided"), one value per pair. Pairwise methods ask the model both orders inside it.
- ``SelectBest``: a batch of groups of items -> the most relevant item of each group (setwise).

Every function hands the comparator all comparisons that do not depend on each other in one batch,
never drops or duplicates an item, and breaks ties by input order (the smaller index wins).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Callable, Sequence

Prefer = Callable[[Sequence[tuple[int, int]]], Sequence[float]]
SelectBest = Callable[[Sequence[Sequence[int]]], Sequence[int]]


def beats(a: int, b: int, share: float) -> bool:
    """Whether a ranks above b given a's share of the win; an undecided 0.5 goes to the earlier input."""
    return share > 0.5 or (share == 0.5 and a < b)


def allpairs_scores(n: int, prefer: Prefer) -> list[float]:
    """PRP all-pairs: every pair compared once (one batch), a win worth 1, a draw 0.5 to each."""
    pairs = list(combinations(range(n), 2))
    scores = [0.0] * n
    for (a, b), share in zip(pairs, prefer(pairs) if pairs else []):
        scores[a] += share
        scores[b] += 1.0 - share
    return scores


def sliding_order(n: int, prefer: Prefer, passes: int) -> list[int]:
    """PRP sliding window: ``passes`` bubble-sort passes from the bottom, each comparing all n-1
    adjacent pairs (the winner of a pair travels up). After K passes the top K are sorted."""
    order = list(range(n))
    for _ in range(passes):
        for pos in range(n - 1, 0, -1):
            upper, lower = order[pos - 1], order[pos]
            share = prefer([(lower, upper)])[0]
            if beats(lower, upper, share):
                order[pos - 1], order[pos] = lower, upper
    return order


def knockout(prefer: Prefer) -> SelectBest:
    """A SelectBest built from pairwise comparisons: a knockout inside each group, in rounds; the
    matches of one round, across all groups, go to ``prefer`` as one batch. A group of g items costs
    g-1 comparisons in ceil(log2 g) rounds."""

    def select(groups: Sequence[Sequence[int]]) -> list[int]:
        alive = [list(g) for g in groups]
        while any(len(a) > 1 for a in alive):
            pairs = [(a[j], a[j + 1]) for a in alive for j in range(0, len(a) - 1, 2)]
            shares = iter(prefer(pairs))
            for gi, a in enumerate(alive):
                winners = []
                for j in range(0, len(a) - 1, 2):
                    x, y = a[j], a[j + 1]
                    winners.append(x if beats(x, y, next(shares)) else y)
                alive[gi] = winners + a[len(a) - len(a) % 2:]
        return [a[0] for a in alive]

    return select


def heap_top_k(n: int, select_best: SelectBest, k: int, arity: int = 2, bottom_up: bool = False) -> list[int]:
    """Top-k by heap sort on an ``arity``-ary max-heap; returns the top k in order, then the rest in
    input order.

    A sift-down step asks ``select_best`` for the best of a node and its children. Building the heap
    sifts every node of one depth at once (their subtrees are disjoint), so each step of those sifts is
    one batch. Each of the k-1 extractions then refills the root, one step per batch: by moving the last
    item to the root and sifting it down, or with ``bottom_up`` (Floyd) by promoting the best child
    level by level down to a leaf, putting the last item there and sifting it up. Bottom-up asks about
    the children only (one comparison per level for a binary heap instead of two), so it suits pairwise
    comparisons; the last item, usually a weak one, then rarely climbs.
    """
    if arity < 2:
        raise ValueError("a heap needs arity >= 2")
    heap = list(range(n))
    k = min(k, n)

    def children(pos: int, size: int) -> range:
        return range(arity * pos + 1, min(arity * pos + arity + 1, size))

    def sift_down(starts: list[int], size: int) -> None:
        active = [p for p in starts if children(p, size)]
        while active:
            groups = [[heap[p]] + [heap[c] for c in children(p, size)] for p in active]
            winners = select_best(groups)
            moved = []
            for p, group, best in zip(active, groups, winners):
                j = group.index(best)
                if j > 0:
                    child = arity * p + j
                    heap[p], heap[child] = heap[child], heap[p]
                    if children(child, size):
                        moved.append(child)
            active = moved

    def refill_bottom_up(item: int, size: int) -> None:
        hole = 0
        while kids := children(hole, size):
            best = select_best([[heap[c] for c in kids]])[0]
            child = next(c for c in kids if heap[c] == best)
            heap[hole], hole = best, child
        heap[hole] = item
        while hole > 0:
            parent = (hole - 1) // arity
            if select_best([[heap[parent], item]])[0] != item:
                break
            heap[hole], heap[parent] = heap[parent], item
            hole = parent

    depth = [0] * n
    for p in range(1, n):
        depth[p] = depth[(p - 1) // arity] + 1
    internal = [p for p in range(n) if children(p, n)]
    for d in sorted({depth[p] for p in internal}, reverse=True):
        sift_down([p for p in internal if depth[p] == d], n)
    top: list[int] = []
    size = n
    for r in range(k):
        top.append(heap[0])
        size -= 1
        last = heap[size]
        if r == k - 1 or size == 0:
            heap[0] = last
        elif bottom_up:
            refill_bottom_up(last, size)
        else:
            heap[0] = last
            sift_down([0], size)
    return top + sorted(heap[:size])


def heap_bound(n: int, k: int, arity: int = 2) -> int:
    """An upper bound on the sift-down steps (``select_best`` groups) of ``heap_top_k``: building
    takes at most the sum of the node heights (< n), each of the k-1 extractions at most the heap's
    height (~log_arity n): O(n + k log n). With ``knockout`` a step costs at most ``arity`` comparisons."""
    height, p = 0, n - 1
    while p > 0:
        p, height = (p - 1) // arity, height + 1
    return max(n - 1, 0) + max(min(k, n) - 1, 0) * height


def bubble_top_k(n: int, select_best: SelectBest, k: int, window: int) -> list[int]:
    """Setwise bubble sort: k passes; each slides a window of ``window`` items from the bottom up by
    window-1 and moves each window's best to the window's top. After pass p the top p are final."""
    if window < 2:
        raise ValueError("a window needs at least 2 items")
    order = list(range(n))
    for p in range(min(k, n - 1)):
        end = n
        while True:
            start = max(end - window, p)
            group = order[start:end]
            j = start + group.index(select_best([group])[0])
            order[start], order[j] = order[j], order[start]
            if start == p:
                break
            end = start + 1
    return order


def bubble_calls(n: int, k: int, window: int) -> int:
    """Prompts ``bubble_top_k`` sends: pass p covers n-p items in ceil((n-p-1)/(window-1)) windows."""
    return sum(math.ceil((n - p - 1) / (window - 1)) for p in range(min(k, n - 1)))
