"""A deterministic backend that answers from qrels: tests an algorithm's properties, never a product path."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from rankwise.llm.protocol import answered, call_usage
from rankwise.types import Usage


class OracleBackend:
    """Knows each passage's grade; answers yes/no and digit choices as a perfect judge would.

    ``format_chat`` returns the user text unchanged so the oracle can read the passage back.
    """

    name = "oracle"
    engine = "oracle"
    dtype = "none"

    def __init__(self, grades: Mapping[str, int], max_grade: int = 3):
        self.grades = dict(grades)  # passage text -> grade
        self.max_grade = max_grade
        self.usage = Usage(engine="oracle", model="oracle")

    def format_chat(self, user: str, system: str | None = None) -> str:
        return user

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return text

    def _grade(self, prompt: str) -> int:
        hits = [g for text, g in self.grades.items() if text in prompt]
        return max(hits, default=0)

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        used = call_usage(self)
        used.calls += len(prompts)
        used.forward_passes += 1
        out = np.full((len(prompts), len(choices)), -20.0, dtype=np.float32)
        for i, p in enumerate(prompts):
            g = self._grade(p)
            if choices[0].startswith("Yes"):
                p_yes = (g + 0.5) / (self.max_grade + 1)
                out[i] = [math.log(p_yes), math.log(1 - p_yes)]
            else:
                out[i, [c.split("|")[0] for c in choices].index(str(g))] = 0.0
        return answered(self, out, used)


def oracle_from_qrels(requests, qrels) -> OracleBackend:
    grades = {}
    for r in requests:
        for c in r.candidates:
            grades[c.content] = qrels.get(r.query.qid, {}).get(c.docid, 0)
    return OracleBackend(grades)


def ndcg10(run, requests, qrels) -> float:
    """nDCG@10 of a run over the given requests' queries only."""
    from rankwise.eval import evaluate

    return evaluate(run, {r.query.qid: qrels[r.query.qid] for r in requests}, ["nDCG@10"])["nDCG@10"]


def ideal_run(requests, qrels) -> dict:
    """The candidates sorted by grade (a run lists its documents in rank order)."""
    run = {}
    for r in requests:
        grade = qrels[r.query.qid]
        ranked = sorted(r.candidates, key=lambda c: -grade.get(c.docid, 0))
        run[r.query.qid] = {c.docid: float(len(ranked) - i) for i, c in enumerate(ranked)}
    return run


def assert_head_reranked(ranking, candidates, top_k: int) -> None:
    """Every candidate kept once; the first ``top_k`` reordered among themselves, the rest in input order;
    scores descending."""
    assert sorted(ranking.docids) == sorted(c.docid for c in candidates)
    assert ranking.docids[top_k:] == [c.docid for c in candidates[top_k:]]
    assert set(ranking.docids[:top_k]) == {c.docid for c in candidates[:top_k]}
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)
