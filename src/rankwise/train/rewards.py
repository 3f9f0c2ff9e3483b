"""GRPO rewards for the groupwise format: the model answers a JSON list of one score (0-3) per passage.

Answers are read with the method's own parser (``rankwise.methods.groupwise.answer_list`` with the answer
regex of the prompt template the model is trained on), so a completion rewarded as well-formed is one the
method reads the same way when it reranks.

- ``format``: partial credit, so that a small model whose answers are all broken still gets a spread of
  rewards to learn from: 1 for exactly a list of the right length with scores in 0-3, 0.75 when text
  follows the list, 0.5 for scores outside 0-3, -0.5..0 for a list of the wrong length (closer lengths
  score higher), -0.75 for a list cut off before its ``]``, -1 for anything else.
- ``ndcg``: nDCG@k of the ranking the scores induce (ties keep the prompt order); gated like ReasonRank:
  0 for a wrong count, -1 for a broken format.
- ``distribution``: 1 - the mean absolute difference between predicted scores and graded labels, both on
  the 0-3 scale (GroupRank aligns score distributions with labels); 0 when the answer does not parse.

Reward functions follow TRL's signature: ``f(completions, labels, **kwargs) -> list[float]``, where
``labels`` comes from the dataset column of that name (one list of grades per prompt) and the optional
``answer_prefix`` column holds the start of the answer that the prompt already wrote for the model (the
method's ``answer_prefix``, ``[``): it is put back in front of the completion before parsing, as the
method does.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

from rankwise.methods.groupwise import answer_list

MAX_GRADE = 3.0
_UNCLOSED = re.compile(r"\[\s*-?\d+(\.\d+)?(\s*,\s*-?\d+(\.\d+)?)*\s*,?\s*$")
FORMAT_VALUES = {"ok": 1.0, "trailing": 0.75, "range": 0.5, "unclosed": -0.75, "broken": -1.0}


def completion_text(completion, prefix: str | None = None) -> str:
    """The text of a completion, plain or conversational (a list of messages), after the answer's prefix."""
    if not isinstance(completion, str):
        completion = "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return (prefix or "") + completion


def _texts(completions, answer_prefix) -> list[str]:
    prefixes = answer_prefix if answer_prefix is not None else [None] * len(completions)
    return [completion_text(c, p) for c, p in zip(completions, prefixes)]


def parse_scores(text: str, n: int, pattern: str) -> tuple[str, list[float] | None]:
    """("ok", scores) for a JSON list of ``n`` numbers (the list ``pattern`` captures); ("count", scores)
    for another length; ("broken", None)."""
    found = answer_list(text, pattern)
    if found is None:
        return "broken", None
    return ("ok" if len(found[0]) == n else "count"), found[0]


def ndcg_at_k(scores: Sequence[float], labels: Sequence[float], k: int = 10) -> float:
    """nDCG@k (gain 2^label - 1) of ``labels`` ordered by ``scores`` descending, ties in input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    dcg = sum((2 ** labels[i] - 1) / math.log2(r + 2) for r, i in enumerate(order[:k]))
    ideal = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(sorted(labels, reverse=True)[:k]))
    return dcg / ideal if ideal > 0 else 0.0


def answer_status(text: str, n: int, pattern: str) -> tuple[str, int]:
    """How well ``text`` follows the format, finer than ``parse_scores``: ("ok" | "trailing" | "range" |
    "count" | "unclosed" | "broken", number of scores found)."""
    found = answer_list(text, pattern)
    if found is None:
        return ("unclosed" if _UNCLOSED.search(text.strip()) else "broken"), 0
    scores, end = found
    if len(scores) != n:
        return "count", len(scores)
    if not all(0 <= s <= MAX_GRADE for s in scores):
        return "range", n
    return ("ok" if not text[end:].strip() else "trailing"), n


def format_value(text: str, n: int, pattern: str) -> float:
    """The format reward of one answer (see the module doc)."""
    status, found = answer_status(text, n, pattern)
    if status == "count":
        return -0.5 * min(1.0, abs(found - n) / n)
    return FORMAT_VALUES[status]


Reward = Callable[..., list[float]]


def make_format_reward(pattern: str) -> Reward:
    """Partial credit for the format: 1 for exactly a right-length list of 0-3 scores down to -1 for garbage."""
    def format_reward(completions, labels, answer_prefix=None, **_) -> list[float]:
        return [format_value(t, len(l), pattern) for t, l in zip(_texts(completions, answer_prefix), labels)]

    return format_reward


def make_ndcg_reward(pattern: str, k: int = 10) -> Reward:
    """An nDCG@k reward (ReasonRank gating: 0 for a wrong count, -1 for a broken format)."""
    def ndcg_reward(completions, labels, answer_prefix=None, **_) -> list[float]:
        out = []
        for t, l in zip(_texts(completions, answer_prefix), labels):
            status, scores = parse_scores(t, len(l), pattern)
            out.append(ndcg_at_k(scores, l, k) if status == "ok" else (0.0 if status == "count" else -1.0))
        return out

    return ndcg_reward


def make_distribution_reward(pattern: str) -> Reward:
    """1 - mean |score - label| / 3 with scores clipped to 0-3; 0 unless the answer has the right length."""
    def distribution_reward(completions, labels, answer_prefix=None, **_) -> list[float]:
        out = []
        for t, l in zip(_texts(completions, answer_prefix), labels):
            status, scores = parse_scores(t, len(l), pattern)
            if status != "ok":
                out.append(0.0)
                continue
            error = sum(abs(min(max(s, 0.0), MAX_GRADE) - g) for s, g in zip(scores, l)) / (MAX_GRADE * len(l))
            out.append(1.0 - error)
        return out

    return distribution_reward


def reward_functions(weights: dict[str, float], pattern: str, k: int = 10) -> tuple[list[Reward], list[float]]:
    """The reward functions named in ``weights`` (ndcg, distribution, format) reading answers with the
    answer regex ``pattern``, and their weights, in order."""
    known = {"ndcg": lambda: make_ndcg_reward(pattern, k), "distribution": lambda: make_distribution_reward(pattern),
             "format": lambda: make_format_reward(pattern)}
    names = [n for n in ("ndcg", "distribution", "format") if n in weights]
    return [known[n]() for n in names], [float(weights[n]) for n in names]
