"""GRPO rewards for the groupwise format: the model answers a JSON list of one score (0-3) per passage.

- ``format``: 1 for a list of the right length, 0 for a list of the wrong length, -1 for anything else
  (ReasonRank's values for the failures).
- ``ndcg``: nDCG@k of the ranking the scores induce (ties keep the prompt order); gated like ReasonRank:
  0 for a wrong count, -1 for a broken format.
- ``distribution``: 1 - the mean absolute difference between predicted scores and graded labels, both on
  the 0-3 scale (GroupRank aligns score distributions with labels); 0 when the answer does not parse.

Reward functions follow TRL's signature: ``f(completions, labels, **kwargs) -> list[float]``, where
``labels`` comes from the dataset column of that name (one list of grades per prompt).
"""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

MAX_GRADE = 3.0
_LIST = re.compile(r"\[[^\[\]]*\]")


def completion_text(completion) -> str:
    """The text of a completion, plain or conversational (a list of messages)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def parse_scores(text: str, n: int) -> tuple[str, list[float] | None]:
    """("ok", scores) for a JSON list of ``n`` numbers; ("count", scores) for another length; ("broken", None)."""
    match = _LIST.search(text)
    if match is None:
        return "broken", None
    try:
        values = json.loads(match.group(0))
    except json.JSONDecodeError:
        return "broken", None
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                             for v in values):
        return "broken", None
    scores = [float(v) for v in values]
    return ("ok" if len(scores) == n else "count"), scores


def ndcg_at_k(scores: Sequence[float], labels: Sequence[float], k: int = 10) -> float:
    """nDCG@k (gain 2^label - 1) of ``labels`` ordered by ``scores`` descending, ties in input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    dcg = sum((2 ** labels[i] - 1) / math.log2(r + 2) for r, i in enumerate(order[:k]))
    ideal = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(sorted(labels, reverse=True)[:k]))
    return dcg / ideal if ideal > 0 else 0.0


def format_reward(completions, labels, **_) -> list[float]:
    """1 for a well-formed list of the right length, 0 for a wrong count, -1 for a broken answer."""
    values = {"ok": 1.0, "count": 0.0, "broken": -1.0}
    return [values[parse_scores(completion_text(c), len(l))[0]] for c, l in zip(completions, labels)]


def make_ndcg_reward(k: int = 10):
    """An nDCG@k reward (ReasonRank gating: 0 for a wrong count, -1 for a broken format)."""
    def ndcg_reward(completions, labels, **_) -> list[float]:
        out = []
        for c, l in zip(completions, labels):
            status, scores = parse_scores(completion_text(c), len(l))
            out.append(ndcg_at_k(scores, l, k) if status == "ok" else (0.0 if status == "count" else -1.0))
        return out

    return ndcg_reward


def distribution_reward(completions, labels, **_) -> list[float]:
    """1 - mean |score - label| / 3 with scores clipped to 0-3; 0 unless the answer has the right length."""
    out = []
    for c, l in zip(completions, labels):
        status, scores = parse_scores(completion_text(c), len(l))
        if status != "ok":
            out.append(0.0)
            continue
        error = sum(abs(min(max(s, 0.0), MAX_GRADE) - g) for s, g in zip(scores, l)) / (MAX_GRADE * len(l))
        out.append(1.0 - error)
    return out


def reward_functions(weights: dict[str, float], k: int = 10) -> tuple[list, list[float]]:
    """The reward functions named in ``weights`` (ndcg, distribution, format) and their weights, in order."""
    known = {"ndcg": make_ndcg_reward(k), "distribution": distribution_reward, "format": format_reward}
    names = [n for n in ("ndcg", "distribution", "format") if n in weights]
    return [known[n] for n in names], [float(weights[n]) for n in names]
