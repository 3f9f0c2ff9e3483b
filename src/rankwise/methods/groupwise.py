"""Groupwise reranking (GroupRank): the query and a group of g documents in one prompt, one comparable
relevance score 0..10 per document. Groups are independent (unlike sliding windows), while the documents
of a group are still judged against each other; the scores of all groups make one ranking.

- ``groupwise.generate``: the model writes "Document [i] score: X" lines (or JSON such as {"1": 7}),
  parsed with the template's ``answer_regex`` (two groups: document number, score), or a JSON list of
  scores in document order (``groupwise.json``: a regex with one group, the list); all groups of a round go
  to the backend as one batch. ``answer_prefix`` starts the assistant's answer in the prompt (``[`` for a
  list) and is put back in front of the answer before parsing. A document the answer does not score is
  scored as in logits mode, and each such answer counts in ``Usage.parse_failures``;
- ``groupwise.logits``: per document, the expected score over the digit tokens after the group prompt
  and "Document [i] score: ". The g prompts of a group go to the backend in one call, so an engine with
  prefix reuse computes the group (the long, shared part) once. "10" is two tokens ("1", "0") for
  tokenizers that split digits (Qwen, SmolLM2): its probability is P("1") * P("0" | "... score: 1"), read
  in the same call from a second prompt per document; where "10" is one token it is read directly.

``rounds`` > 1 repeats the scoring with the candidates shuffled into new groups (seeded) and averages the
scores, to reduce group and position effects; round 1 keeps the input order. Ties keep the input order.
"""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

import numpy as np

from rankwise.errors import InputError
from rankwise.methods.listwise import labels_for, render_list
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

DEFAULT_PASSAGE_TOKENS = 128
MODES = ("generate", "logits")
MAX_SCORE = 10
LIST_TOP_SCORE = 3
"""The scale of a JSON-list prompt (``groupwise.json``: 0..3); "Document [i] score: X" prompts use 0..10."""
DIGITS = [str(d) for d in range(10)]


def make_groups(n: int, size: int, shuffle_seed: int | None = None) -> list[list[int]]:
    """Consecutive groups of ``size`` indices of 0..n-1, in input order or shuffled by ``shuffle_seed``."""
    items = list(range(n))
    if shuffle_seed is not None:
        items = [int(i) for i in np.random.default_rng(shuffle_seed).permutation(n)]
    return [items[i:i + size] for i in range(0, n, size)]


def answer_list(text: str, pattern: str) -> tuple[list[float], int] | None:
    """The JSON list of numbers that group 1 of ``pattern`` captures at its first match in ``text``, and
    where that match ends; None when there is no match or the capture is not a non-empty list of numbers."""
    match = re.search(pattern, text, flags=re.S)
    if match is None:
        return None
    try:
        values = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    if not isinstance(values, list) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values], match.end()


def parse_scores(text: str, n: int, pattern: str) -> dict[int, float]:
    """Scores by position 0..n-1 from a generated answer; the first valid score of a document wins.

    ``pattern`` with two groups captures each document's number (1-based) and score; with one group, a
    JSON list of scores in document order (``answer_list``). Numbers out of range and scores outside
    0..10 are ignored.
    """
    if re.compile(pattern).groups == 1:
        found = answer_list(text, pattern)
        pairs = list(enumerate(found[0])) if found else []
    else:
        pairs = [(int(m.group(1)) - 1, float(m.group(2))) for m in re.finditer(pattern, text)]
    scores: dict[int, float] = {}
    for position, score in pairs:
        if 0 <= position < n and 0 <= score <= MAX_SCORE and position not in scores:
            scores[position] = score
    return scores


def expected_scores(digit_logprobs: np.ndarray, zero_after_one: np.ndarray | None = None) -> np.ndarray:
    """Expected score per row from the log-probabilities of the scores' first tokens.

    ``digit_logprobs``: [m, 10] for "0".."9" (with ``zero_after_one``: [m], log P("0" | "... 1"), which
    splits the mass of "1" into 1 and 10), or [m, 11] for "0".."10" when "10" is one token.
    """
    z = digit_logprobs.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if zero_after_one is not None:
        ten = np.clip(np.exp(zero_after_one.astype(np.float64)), 0.0, 1.0)
        p = np.concatenate([p, (p[:, 1] * ten)[:, None]], axis=1)
        p[:, 1] *= 1.0 - ten
    return p @ np.arange(p.shape[1], dtype=np.float64)


class Groupwise(Method):
    """GroupRank over a backend: groups of ``group_size``, scored by ``mode``, ``rounds`` averaged.

    ``score_prefix`` is what the answer says before a document's score (logits mode and the fallback of
    generate mode); it must match the output format the prompt asks for. ``answer_prefix`` (generate mode)
    ends the prompt: the answer's first characters, written for the model.
    """

    def __init__(self, backend, mode: str, prompt: str | PromptTemplate = "groupwise.score",
                 group_size: int = 10, rounds: int = 1, seed: int = 0,
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS, score_prefix: str = "Document [{label}] score: ",
                 tokens_per_item: int = 12, answer_prefix: str = ""):
        if mode not in MODES:
            raise InputError(f"unknown groupwise mode {mode!r}; choose one of {', '.join(MODES)}")
        if group_size < 1 or rounds < 1:
            raise InputError(f"group_size and rounds must be at least 1 (got {group_size}, {rounds})")
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        if not self.template.item:
            raise InputError(f"prompt {self.template.name!r} needs an item line")
        if mode == "generate" and not self.template.answer_regex:
            raise InputError(f"prompt {self.template.name!r} needs an answer_regex for generate mode")
        if self.template.answer_regex and re.compile(self.template.answer_regex).groups not in (1, 2):
            raise InputError(f"prompt {self.template.name!r}: answer_regex needs one group (a JSON list of "
                             "scores) or two (document number, score)")
        if mode == "logits" and answer_prefix:
            raise InputError("answer_prefix applies to groupwise.generate; logits mode reads score_prefix")
        several = [d for d in DIGITS if backend.count_tokens(d) != 1]
        if several:
            raise InputError(f"groupwise scoring reads single-token digits; {', '.join(several)} take several "
                             "tokens in this model's tokenizer")
        self.backend = backend
        self.mode = mode
        self.group_size = group_size
        self.rounds = rounds
        self.seed = seed
        self.max_passage_tokens = max_passage_tokens
        self.score_prefix = score_prefix
        self.tokens_per_item = tokens_per_item
        self.answer_prefix = answer_prefix
        self.ten_is_one_token = backend.count_tokens(str(MAX_SCORE)) == 1
        self.name = f"groupwise.{mode}"

    @property
    def lists_scores(self) -> bool:
        """Whether the prompt asks for a JSON list of scores (answer_regex with one group) rather than one
        "Document [i] score: X" line per document."""
        return re.compile(self.template.answer_regex or "").groups == 1

    @property
    def top_score(self) -> int:
        """The top of the prompt's scale: 0..3 for a list prompt (``groupwise.json``), else 0..10."""
        return LIST_TOP_SCORE if self.lists_scores else MAX_SCORE

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        """The rendered group prompt (each passage cut to ``max_passage_tokens``), ending with the
        ``answer_prefix``: what the model continues. Training renders its prompts here too."""
        labels = labels_for(len(passages), "numeric")
        cut = [self.backend.truncate(p, self.max_passage_tokens) for p in passages]
        user = self.template.render(query=query, num=str(len(passages)),
                                    passages=render_list(self.template, labels, cut))
        return self.backend.format_chat(user, system=self.template.system) + self.answer_prefix

    def read_answer(self, text: str, n: int) -> dict[int, float]:
        """Scores by position 0..n-1 of a generated answer (``text`` follows the prompt's answer prefix)."""
        return parse_scores(self.answer_prefix + text, n, self.template.answer_regex)

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        used = Usage()
        totals = np.zeros(len(head))
        failures = 0
        for r in range(self.rounds if len(head) > 1 else 0):
            groups = make_groups(len(head), self.group_size, None if r == 0 else self.seed + r)
            prompts = [self.prompt(query.text, [head[i].content for i in g]) for g in groups]
            scores, failed = self._score_groups(prompts, [len(g) for g in groups], used)
            failures += failed
            for g, s in zip(groups, scores):
                totals[g] += s
        used.parse_failures += failures
        return Ranking.from_scores(query, head, (totals / self.rounds).tolist(), used)

    def _score_groups(self, prompts: list[str], sizes: list[int], used: Usage) -> tuple[list[np.ndarray], int]:
        """Scores of every group (in its shown order) and the number of answers that needed a fallback."""
        if self.mode == "logits":
            return [self._logit_scores(p, range(n), used) for p, n in zip(prompts, sizes)], 0
        budget = self.tokens_per_item * max(sizes) + 8
        texts = spend(used, self.backend.generate(prompts, max_new_tokens=budget, stop=["\n\n"]))
        out, failures = [], 0
        for prompt, n, text in zip(prompts, sizes, texts):
            parsed = self.read_answer(text, n)
            scores = np.array([parsed.get(i, np.nan) for i in range(n)])
            missing = [i for i in range(n) if i not in parsed]
            if missing:
                failures += 1
                scores[missing] = self._logit_scores(prompt, missing, used)
            out.append(scores)
        return out, failures

    def _logit_scores(self, prompt: str, positions: Sequence[int], used: Usage) -> np.ndarray:
        """Expected scores of the documents at ``positions`` of one group: one backend call."""
        prompts = [prompt + self.score_prefix.format(label=i + 1) for i in positions]
        if self.ten_is_one_token:
            return expected_scores(np.asarray(spend(used, self.backend.choice_logprobs(
                prompts, DIGITS + [str(MAX_SCORE)]))))
        lp = np.asarray(spend(used, self.backend.choice_logprobs(prompts + [p + "1" for p in prompts], DIGITS)))
        m = len(prompts)
        return expected_scores(lp[:m], lp[m:, 0])


OPTIONS = (
    Option("prompt", (str, PromptTemplate), "groupwise.score", "prompt template name or YAML file"),
    Option("group_size", int, 10, "documents per prompt"),
    Option("rounds", int, 1, "scorings over reshuffled groups, averaged"),
    Option("seed", int, 0, "seed of the reshuffles"),
    Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"),
    Option("score_prefix", str, "Document [{label}] score: ", "logits: the text before each document's score"),
    Option("tokens_per_item", int, 12, "generate: generation budget per document"),
    Option("answer_prefix", str, "", "generate: the start of the answer, written at the end of the prompt"))


@register("groupwise.generate", "llm", "GroupRank: groups of 10 in one prompt, generated 0..10 scores, merged",
          OPTIONS)
def generate(backend, **opts) -> Groupwise:
    return Groupwise(backend, "generate", **opts)


@register("groupwise.logits", "llm", "GroupRank: expected 0..10 score per document from digit logits, group computed once",
          OPTIONS)
def logits(backend, **opts) -> Groupwise:
    return Groupwise(backend, "logits", **opts)
