"""A deterministic comparison backend that answers from qrels: it finds the passages of a pairwise or setwise
prompt by their text, in the order they appear (A, B, C, ...), and picks the one with the best grade.

Tests algorithm properties (orderings, call counts, position bias, parse fallbacks), never a product path.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rankwise.llm.protocol import answered, call_usage

from rankwise.types import Usage

REASONING_PREFIX = "<think>"


class CompareOracle:
    """Answers label choices and generations as a perfect judge, optionally biased or malformed.

    ``bias`` is added to the grade of the passage shown first (position A): a judge with bias 1.5 picks
    A unless B is better by 2 grades. ``malformed_every=n`` makes every n-th generated answer garbage.
    Equal grades go to the passage shown first. ``format_chat`` returns the user text unchanged.
    """

    name = "compare-oracle"
    engine = "oracle"
    dtype = "none"

    def __init__(self, grades: Mapping[str, int], bias: float = 0.0, malformed_every: int = 0):
        self.grades = {t: g for t, g in grades.items() if t}  # passage text -> grade
        self.bias = bias
        self.malformed_every = malformed_every
        self.generated = 0
        self.max_new_tokens: list[int] = []
        self.usage = Usage(engine="oracle", model="compare-oracle")

    def format_chat(self, user: str, system: str | None = None) -> str:
        return user

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return text

    def grades_in(self, prompt: str) -> list[int]:
        """Grades of the passages in the prompt, in order of appearance (A, B, ...)."""
        spans = []
        for text, grade in self.grades.items():
            at = prompt.find(text)
            while at >= 0:
                spans.append((at, at + len(text), grade))
                at = prompt.find(text, at + 1)
        spans.sort(key=lambda s: (s[0], -s[1]))
        found, end = [], -1
        for start, stop, grade in spans:  # drop a passage found inside another one
            if start >= end:
                found.append(grade)
                end = stop
        return found

    def _judged(self, prompt: str) -> np.ndarray:
        grades = np.array(self.grades_in(prompt), dtype=np.float64)
        if len(grades):
            grades[0] += self.bias
        return grades

    def _count(self, prompts: Sequence[str]) -> Usage:
        """The usage of one call over ``prompts`` (the caller adds completion tokens)."""
        used = call_usage(self)
        used.calls += len(prompts)
        used.forward_passes += 1
        used.prompt_tokens += sum(self.count_tokens(p) for p in prompts)
        return used

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        used = self._count(prompts)
        out = np.full((len(prompts), len(choices)), -50.0)
        for i, prompt in enumerate(prompts):
            judged = self._judged(prompt)[: len(choices)]
            out[i, : len(judged)] = 4.0 * judged
        out -= np.logaddexp.reduce(out, axis=1, keepdims=True)
        return answered(self, out.astype(np.float32), used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        used = self._count(prompts)
        self.max_new_tokens.append(max_new_tokens)
        texts = []
        for prompt in prompts:
            self.generated += 1
            judged = self._judged(prompt)
            label = "ABCDEFGHIJKLMNOPQRSTUVW"[int(np.argmax(judged))] if len(judged) else "A"
            if self.malformed_every and self.generated % self.malformed_every == 0:
                text = " I cannot decide which one" if not prompt.endswith(REASONING_PREFIX) else \
                    " Passage one looks fine, and so does the other"
            elif prompt.endswith(REASONING_PREFIX):
                text = f" I compare every passage with the query.</think>\n<answer>{label}"
            else:
                text = f" {label}"
            used.completion_tokens += self.count_tokens(text)
            texts.append(text)
        return answered(self, texts, used)


def compare_oracle(requests, qrels, **options) -> CompareOracle:
    """An oracle that knows the grade of every candidate of ``requests``."""
    grades = {}
    for r in requests:
        for c in r.candidates:
            grades[c.content] = qrels.get(r.query.qid, {}).get(c.docid, 0)
    return CompareOracle(grades, **options)
