"""A deterministic backend for listwise and groupwise prompts that answers from qrels: it finds the passages
of a prompt by their text, in the order shown, and answers as a perfect judge would. Tests algorithm
properties (orderings, call counts, parse repairs), never a product path.

- listwise generation: the identifiers of the window (the "[label]" at the start of each item line)
  ordered by grade, written "[3] > [1] > [2]" (the answer prefix "[" is continued when the prompt ends
  with it; after "<think>", thoughts naming the worst passage first, then "<answer>...</answer>"); FIRST: the inherited ``CompareOracle`` choice log-probabilities (by position, 4 x grade);
- groupwise generation: "Document [i] score: s" lines with s = round(10 * grade / max_grade), or for the
  groupwise.json prompt ("Passage i:" items) a JSON list of the grades in order (continuing a "[" the
  prompt ends with); groupwise logits: the prompt ends with "Document [i] score: " (first digit) or "... score: 1" (P("0") after "1").
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from rankwise.llm.protocol import answered

from tests.oracle_compare import CompareOracle

ITEM_LABEL = re.compile(r"^\[(\w+)\]", flags=re.M)
SCORE_PROMPT = re.compile(r"\[(\d+)\] score: (1?)$")
LOW = -30.0


class ListwiseOracle(CompareOracle):
    """``split_digits``: count "10" as two tokens (as Qwen and SmolLM2 do) instead of one word.
    ``malformed_every=n``: every n-th generated answer is prose without identifiers or scores."""

    name = "listwise-oracle"

    def __init__(self, grades, max_grade: int = 3, split_digits: bool = False, **options):
        super().__init__(grades, **options)
        self.max_grade = max_grade
        self.split_digits = split_digits
        self.generate_calls = 0

    def count_tokens(self, text: str) -> int:
        if self.split_digits:
            return len(re.findall(r"\d|[^\s\d]+", text))
        return len(text.split())

    def score_of(self, grade: float) -> int:
        return round(10 * grade / self.max_grade)

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        asked = [SCORE_PROMPT.search(p) for p in prompts]
        if not any(asked):
            return super().choice_logprobs(prompts, choices)
        used = self._count(prompts)
        out = np.full((len(prompts), len(choices)), LOW)
        names = [c.split("|")[0] for c in choices]
        for row, (prompt, match) in enumerate(zip(prompts, asked)):
            score = self.score_of(self.grades_in(prompt)[int(match.group(1)) - 1])
            if match.group(2):  # after "1": is it "10"?
                out[row, names.index("0")] = 0.0 if score == 10 else LOW
            else:
                out[row, names.index(str(score) if str(score) in names else str(score)[0])] = 0.0
        return answered(self, out.astype(np.float32), used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        used = self._count(prompts)
        self.generate_calls += 1
        self.max_new_tokens.append(max_new_tokens)
        texts = []
        for prompt in prompts:
            self.generated += 1
            grades = self.grades_in(prompt)
            if self.malformed_every and self.generated % self.malformed_every == 0:
                text = "I think all of these passages are quite relevant."
            elif "Document [1]:" in prompt:
                text = "\n".join(f"Document [{i + 1}] score: {self.score_of(g)}" for i, g in enumerate(grades))
            elif "Passage 1:" in prompt:
                text = "[" + ", ".join(str(g) for g in grades) + "]"
                text = text[1:] if prompt.endswith("[") else text
            else:
                labels = ITEM_LABEL.findall(prompt)
                best = sorted(range(len(labels)), key=lambda i: -grades[i])
                text = " > ".join(f"[{labels[i]}]" for i in best)
                if prompt.endswith("["):
                    text = text[1:]
                elif prompt.endswith("<think>"):  # reasoning: thoughts naming the worst first, then the answer
                    text = f" [{labels[best[-1]]}] is off topic. </think> <answer>{text}</answer>"
            used.completion_tokens += self.count_tokens(text)
            texts.append(text)
        return answered(self, texts, used)


def listwise_oracle(requests, qrels, **options) -> ListwiseOracle:
    """An oracle that knows the grade of every candidate of ``requests``."""
    grades = {}
    for r in requests:
        for c in r.candidates:
            grades[c.content] = qrels.get(r.query.qid, {}).get(c.docid, 0)
    return ListwiseOracle(grades, **options)
