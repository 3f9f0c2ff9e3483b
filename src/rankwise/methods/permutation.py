"""Pure listwise algorithms over item indices: sliding windows, top-down partitioning, and the robust
parsing of a generated permutation. No model here: an algorithm takes a ``RankWindow`` callable
("order these items") so it is tested with deterministic doubles in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

# Orders the given items (indices into the candidate list), best first; returns the same items.
RankWindow = Callable[[list[int]], list[int]]

NUMERIC_FALLBACK = r"\b(\d+)\b"
ALPHA_FALLBACK = r"\b([A-Z])\b"


def window_spans(n: int, size: int, step: int) -> list[tuple[int, int]]:
    """The [start, end) windows of a back-to-front sliding pass, as RankGPT: the first window ends at n,
    each next one starts ``step`` earlier, the last one starts at 0. Every window holds ``size`` items
    (all n if n < size); there are ceil((n - size) / step) + 1 windows when n > size, one otherwise."""
    if size < 1 or step < 1:
        raise ValueError("window size and step must be at least 1")
    if n <= 1:
        return []
    if n <= size:
        return [(0, n)]
    spans = []
    start = n - size
    while start > 0:
        spans.append((start, start + size))
        start -= step
    spans.append((0, size))
    return spans


def sliding_windows(n: int, size: int, step: int, rank: RankWindow) -> list[int]:
    """One back-to-front pass of windows; the best items bubble up to the top. Returns an order of 0..n-1."""
    order = list(range(n))
    for start, end in window_spans(n, size, step):
        order[start:end] = _checked(rank(order[start:end]), order[start:end])
    return order


def tdpart(n: int, size: int, cutoff: int, buffer: int, rank: RankWindow, max_iters: int = 100) -> list[int]:
    """Top-down partitioning (Parry et al., SIGIR 2024; pyterrier-generative's ``tdpart``).

    Rank the first window; its item at position ``cutoff`` is the pivot. The rest is read in windows of
    ``size - 1`` items with the pivot in front: items ranked above the pivot join the candidates, the
    others the backfill, until ``buffer`` candidates are found or the list is exhausted. If nothing beat
    the pivot, the top ``cutoff`` is final; otherwise the same step runs on the candidates (at most
    ``buffer`` of them). Backfill of a later step beat an earlier pivot, so it ranks above the earlier
    backfill. Returns an order of 0..n-1 whose first ``cutoff`` items are sorted.
    """
    if not 1 <= cutoff < size:
        raise ValueError(f"cutoff must be between 1 and the window size - 1 (got {cutoff}, window {size})")
    if buffer < cutoff:
        raise ValueError(f"buffer must be at least the cutoff (got {buffer} < {cutoff})")
    pool, backfill = list(range(n)), []
    for _ in range(max_iters):
        pool, rest, done = _tdpart_step(pool, size, cutoff, buffer, rank)
        backfill = rest + backfill
        if done:
            break
    return pool + backfill


def _tdpart_step(pool: list[int], size: int, cutoff: int, buffer: int,
                 rank: RankWindow) -> tuple[list[int], list[int], bool]:
    if len(pool) <= 1:
        return pool, [], True
    window = _checked(rank(pool[:size]), pool[:size])
    remainder = pool[size:]
    if len(pool) <= size:
        return window, [], True
    pivot = window[cutoff - 1]
    above, below = window[:cutoff - 1], window[cutoff:]
    while len(above) < buffer and remainder:
        chunk, remainder = remainder[:size - 1], remainder[size - 1:]
        ranked = _checked(rank([pivot] + chunk), [pivot] + chunk)
        at = ranked.index(pivot)
        above += ranked[:at]
        below += ranked[at + 1:]
    if len(above) == cutoff - 1:  # nothing beat the pivot: the top `cutoff` is final
        return above + [pivot], below + remainder, True
    return above[:buffer], above[buffer:] + [pivot] + below + remainder, False


def _checked(ranked: Sequence[int], items: Sequence[int]) -> list[int]:
    if sorted(ranked) != sorted(items):
        raise ValueError("a window ranking must return exactly the items it was given")
    return list(ranked)


@dataclass(frozen=True)
class ParsedPermutation:
    """Positions 0..n-1 in the order the model gave them, completed; ``repaired`` if it needed fixing."""

    order: list[int]
    repaired: bool


def parse_permutation(text: str, labels: Sequence[str], pattern: str = r"\[\s*(\w+)\s*\]") -> ParsedPermutation:
    """Read a generated ranking such as ``[3] > [1] > [2]`` or ``3, 1, 2`` over identifiers ``labels``.

    Identifiers matching ``pattern`` (group 1 is the label) are used if there are any, otherwise bare
    numbers (numeric labels) or bare capital letters (alphabetic labels). Text around them is ignored;
    unknown identifiers and repeats are dropped and the missing ones appended in input order, and any of
    these repairs (or an empty answer) marks the result ``repaired``.
    """
    index = {label: i for i, label in enumerate(labels)}
    found = [m.group(1) for m in re.finditer(pattern, text)]
    if not found:
        fallback = NUMERIC_FALLBACK if all(label.isdigit() for label in labels) else ALPHA_FALLBACK
        found = [m.group(1) for m in re.finditer(fallback, text)]
    order: list[int] = []
    repaired = False
    for label in found:
        i = index.get(str(int(label)) if label.isdigit() else label.upper())
        if i is None or i in order:
            repaired = True
            continue
        order.append(i)
    missing = [i for i in range(len(labels)) if i not in order]
    return ParsedPermutation(order + missing, repaired or bool(missing))
