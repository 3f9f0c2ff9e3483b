"""Pointwise reranking: every candidate scored on its own, from next-token log-probabilities (or logits).

- ``pointwise.yes_no``: P(Yes) over {Yes, No} (variants of each token summed);
- ``pointwise.logit``: the raw logit of the prompt's first answer token, for rerankers trained on one token's
  logit (RankT5's ``<extra_id_10>``, bge-reranker-v2-minicpm-layerwise's "Yes");
- ``pointwise.graded``: the expected relevance over the digit tokens 0..k (ERank, ProRank);
- ``pointwise.qlm``: query likelihood, log P(query | passage).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rankwise.errors import InputError
from rankwise.llm.profiles import profile_options
from rankwise.llm.protocol import ContinuationBackend, LogitBackend, require
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

DEFAULT_PASSAGE_TOKENS = 300


class Pointwise(Method):
    """Score each of the top-k candidates independently; one batched backend call per query."""

    def __init__(self, backend, prompt: str | PromptTemplate, mode: str,
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS):
        self.backend = backend
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        self.mode = mode
        self.max_passage_tokens = max_passage_tokens
        self.name = f"pointwise.{mode}"
        if mode == "qlm":
            require(backend, ContinuationBackend, "pointwise.qlm (query likelihood)")
        if mode == "logit":
            require(backend, LogitBackend, "pointwise.logit (raw logits)")
            if not self.template.choices:
                raise InputError(f"pointwise.logit reads the logit of the prompt's first answer token, and prompt "
                                 f"{self.template.name!r} has no choices")

    def prompts(self, query: Query, candidates: Sequence[Candidate]) -> list[str]:
        return [self.backend.format_chat(self.template.render(
            query=query.text, passage=self.backend.truncate(c.content, self.max_passage_tokens)),
            system=self.template.system) for c in candidates]

    def score(self, query: Query, candidates: Sequence[Candidate], used: Usage) -> np.ndarray:
        """One score per candidate (one backend call); the call's usage is added to ``used``."""
        prompts = self.prompts(query, candidates)
        if self.mode == "qlm":
            return np.asarray(spend(used, self.backend.continuation_logprobs(prompts, [query.text] * len(prompts))))
        if self.mode == "logit":
            return np.asarray(spend(used, self.backend.choice_logits(prompts, self.template.choices[:1])))[:, 0]
        logprobs = spend(used, self.backend.choice_logprobs(prompts, self.template.choices))
        probs = _softmax(np.asarray(logprobs))
        if self.mode == "yes_no":
            return probs[:, 0]
        grades = np.array([float(c.split("|")[0]) for c in self.template.choices])
        return probs @ grades

    def rank(self, query: Query, candidates: list[Candidate]) -> Ranking:
        used = Usage()
        return Ranking.from_scores(query, candidates, self.score(query, candidates, used).tolist(), used)


def _softmax(logprobs: np.ndarray) -> np.ndarray:
    z = logprobs.astype(np.float64) - logprobs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _options(prompt: str) -> tuple[Option, ...]:
    return (Option("prompt", (str, PromptTemplate), prompt,
                   "prompt template name or YAML file (default: the model's profile, else this)"),
            Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"))


@register("pointwise.yes_no", "llm", "P(Yes) of the next token, per candidate", _options("pointwise.yes_no"))
def yes_no(backend, **opts) -> Pointwise:
    opts = profile_options(backend, "pointwise.yes_no", opts)  # a known reranker's own prompt
    return Pointwise(backend, opts.pop("prompt", "pointwise.yes_no"), "yes_no", **opts)


@register("pointwise.logit", "llm", "the raw logit of the prompt's first answer token, per candidate (RankT5, "
          "bge layer-wise)", _options("pointwise.yes_no"))
def logit(backend, **opts) -> Pointwise:
    opts = profile_options(backend, "pointwise.logit", opts)  # RankT5 reads <extra_id_10>, not "Yes"
    return Pointwise(backend, opts.pop("prompt", "pointwise.yes_no"), "logit", **opts)


@register("pointwise.graded", "llm", "expected relevance 0..k over digit tokens (ERank/ProRank)",
          _options("pointwise.graded"))
def graded(backend, prompt: str = "pointwise.graded", **opts) -> Pointwise:
    return Pointwise(backend, prompt, "graded", **opts)


@register("pointwise.qlm", "llm", "query likelihood log P(query | passage)", _options("pointwise.qlm"))
def qlm(backend, prompt: str = "pointwise.qlm", **opts) -> Pointwise:
    return Pointwise(backend, prompt, "qlm", **opts)
