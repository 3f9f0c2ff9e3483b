"""GRPO rewards: named, weighted components over answers read by the trained method's own parser.

Every component maps an ``Answer`` (rankwise.train.grpo_targets: one score per passage shown, a format
grade) and the passages' graded labels (0..3) to a number:

- ``format``: the target's format grade (1 for an answer exactly as asked, partial credit below, -1 for
  one that does not parse; for reasoning methods the think/answer tags in order);
- ``ndcg``: nDCG@k of the ranking the answer's scores induce, ties broken against the answer (the less
  relevant passage first): an answer that scores every passage alike gets the worst ranking, not an
  average one (the first groupwise run settled on all-zero lists, which prompt-order ties rewarded);
- ``recall``: recall@k of that ranking (relevant: label >= the threshold; ties broken the same way);
- ``rbo``: rank-biased overlap (p = 0.9) of that ranking with the target order (labels descending;
  ReasonRank's multi-view reward combines it with nDCG and recall);
- ``distribution``: 1 - the mean absolute difference between scores and labels on the 0-3 scale
  (GroupRank's distributional reward; for a pointwise grade, its distance to the label);
- ``label``: 1 when the top-scored passage has the best label shown (Rank-R1: the chosen one is a most
  relevant passage), else 0;
- ``coarse``: the share of passages whose score and label fall on the same side of the threshold
  (ProRank's warm-up: coarse relevance);
- ``pooled`` (pointwise, ERank-style): the completions of all passages of a list (``list_id``) are pooled
  into one ranking; a completion is credited with the share of the completions of differently labelled
  passages it is ordered correctly against (ties count half), each pair weighted by the label difference.

Ranking components (ndcg, recall, rbo) are gated like ReasonRank: 0 for an answer that parses but not as
a complete ranking, -1 for one that does not parse. ``distribution``, ``label``, ``coarse`` and ``pooled``
give 0 to an unparsable answer. Reward functions follow TRL's signature ``f(completions, labels, **columns)
-> list[float]``; the ``answer_prefix`` column is put back in front of each completion before parsing,
as the method does.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from rankwise.train.grpo_targets import BROKEN, MAX_GRADE, OK, Answer, Target, completion_text

Reward = Callable[..., list[float]]
COMPONENTS = ("format", "ndcg", "recall", "rbo", "distribution", "label", "coarse", "pooled")
RBO_P = 0.9


def ranked(scores: Sequence[float]) -> list[int]:
    """Positions by score descending, ties in prompt order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ranked_against(scores: Sequence[float], labels: Sequence[float]) -> list[int]:
    """Positions by score descending, ties broken against the answer: the lower label first (then the later
    prompt position), so that a tie never earns what telling the passages apart would."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], labels[i], -i))


def ndcg_at_k(scores: Sequence[float], labels: Sequence[float], k: int = 10) -> float:
    """nDCG@k (gain 2^label - 1) of ``labels`` ordered by ``scores`` descending, ties broken against the
    answer (``ranked_against``)."""
    order = ranked_against(scores, labels)
    dcg = sum((2 ** labels[i] - 1) / math.log2(r + 2) for r, i in enumerate(order[:k]))
    ideal = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(sorted(labels, reverse=True)[:k]))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(scores: Sequence[float], labels: Sequence[float], k: int, threshold: float) -> float:
    """Share of the relevant passages (label >= ``threshold``) in the top k; 0 when none is relevant."""
    relevant = {i for i, label in enumerate(labels) if label >= threshold}
    return len(relevant & set(ranked_against(scores, labels)[:k])) / len(relevant) if relevant else 0.0


def rbo(ranking: Sequence[int], target: Sequence[int], p: float = RBO_P) -> float:
    """Rank-biased overlap of two orders of the same items, normalised so that equal orders give 1:
    sum over depths d of p^(d-1) * |overlap at d| / d, divided by the same sum for equal orders."""
    seen_a, seen_b, total, best = set(), set(), 0.0, 0.0
    for d, (a, b) in enumerate(zip(ranking, target), 1):
        seen_a.add(a)
        seen_b.add(b)
        total += p ** (d - 1) * len(seen_a & seen_b) / d
        best += p ** (d - 1)
    return total / best if best else 0.0


def target_order(labels: Sequence[float]) -> list[int]:
    """The ideal order: labels descending, ties in prompt order."""
    return ranked(labels)


def component_value(name: str, answer: Answer, labels: Sequence[float], k: int, threshold: float) -> float:
    """One component's value for one answer (``pooled`` needs the batch: see ``pooled_values``)."""
    if name == "format":
        return answer.format
    if name in ("ndcg", "recall", "rbo"):
        if answer.status == BROKEN:
            return -1.0
        if answer.status != OK or answer.scores is None or len(answer.scores) != len(labels):
            return 0.0
        if name == "ndcg":
            return ndcg_at_k(answer.scores, labels, k)
        if name == "recall":
            return recall_at_k(answer.scores, labels, k, threshold)
        return rbo(ranked_against(answer.scores, labels), target_order(labels))
    scores = answer.scores
    if scores is None or len(scores) != len(labels):
        return 0.0
    if name == "distribution":
        return 1.0 - sum(abs(s - g) for s, g in zip(scores, labels)) / (MAX_GRADE * len(labels))
    if name == "label":
        return 1.0 if labels[ranked_against(scores, labels)[0]] == max(labels) else 0.0
    if name == "coarse":
        return sum((s >= threshold) == (g >= threshold) for s, g in zip(scores, labels)) / len(labels)
    raise ValueError(f"unknown reward component {name!r}")


def pooled_values(answers: Sequence[Answer], labels: Sequence[Sequence[float]],
                  list_ids: Sequence[object], doc_ids: Sequence[object]) -> list[float]:
    """The pooled (ERank-style) credit of every completion of a batch of one-passage answers (see the
    module doc). ``doc_ids`` tell a passage's own other completions apart from other passages'."""
    out = []
    for i, (a, l) in enumerate(zip(answers, labels)):
        if a.scores is None:
            out.append(0.0)
            continue
        won = weight = 0.0
        for j, (b, m) in enumerate(zip(answers, labels)):
            if list_ids[j] != list_ids[i] or doc_ids[j] == doc_ids[i] or b.scores is None or m[0] == l[0]:
                continue
            w = abs(l[0] - m[0])
            agree = (a.scores[0] - b.scores[0]) * (l[0] - m[0])
            won += w * (1.0 if agree > 0 else 0.5 if agree == 0 else 0.0)
            weight += w
        out.append(won / weight if weight else 0.0)
    return out


class AnswerLog:
    """What the policy answered since the last log (the answers' keys), for the collapse check."""

    def __init__(self):
        self.keys: list[str] = []

    def record(self, answers: Sequence[Answer]) -> None:
        self.keys.extend(a.key for a in answers)

    def take(self) -> list[str]:
        keys, self.keys = self.keys, []
        return keys


def read_answers(target: Target, completions, labels, answer_prefix=None) -> list[Answer]:
    prefixes = answer_prefix if answer_prefix is not None else [None] * len(completions)
    return [target.read(completion_text(c, p), len(l)) for c, p, l in zip(completions, prefixes, labels)]


def make_reward(name: str, target: Target, k: int = 10, threshold: float = 2.0,
                log: AnswerLog | None = None) -> Reward:
    """The TRL reward function of component ``name`` (its ``__name__`` is ``<name>_reward``, as TRL logs
    it); ``log``, when given, records every answer read."""
    def reward(completions, labels, answer_prefix=None, list_id=None, prompts=None, **_) -> list[float]:
        answers = read_answers(target, completions, labels, answer_prefix)
        if log is not None:
            log.record(answers)
        if name == "pooled":
            ids = list_id if list_id is not None else [0] * len(answers)
            return pooled_values(answers, labels, ids, prompts if prompts is not None else range(len(answers)))
        return [component_value(name, a, l, k, threshold) for a, l in zip(answers, labels)]

    reward.__name__ = f"{name}_reward"
    return reward


def reward_functions(weights: dict[str, float], target: Target, k: int = 10, threshold: float = 2.0,
                     log: AnswerLog | None = None) -> tuple[list[Reward], list[float]]:
    """The reward functions named in ``weights`` (in ``COMPONENTS`` order) and their weights; the first
    one also records the answers in ``log``."""
    names = [n for n in COMPONENTS if n in weights]
    funcs = [make_reward(n, target, k, threshold, log if i == 0 else None) for i, n in enumerate(names)]
    return funcs, [float(weights[n]) for n in names]
