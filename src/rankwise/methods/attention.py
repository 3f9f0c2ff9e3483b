"""In-context reranking (``attention.icr``; Chen et al., "Attention in Large Language Models Yields
Efficient Zero-Shot Re-Rankers", ICLR 2025): no text is generated and no candidate is scored alone.

The candidates go into one prompt, "[1] passage ... [n] passage", followed by the query. The attention
that the query's tokens pay to each passage's tokens (mean over the query tokens, summed over heads and
the chosen layers) is the passage's score, calibrated by the same prompt with the content-free query
"N/A": the model's bias towards positions and tokens, whatever the query, is subtracted. As in ICR's
released code, the query tokens span the closing instruction, the query and the chat template's
assistant header, and ``calibration="masked"`` (its default) drops the tokens of a passage whose
calibrated score lies more than two standard deviations below that passage's mean before summing;
``calibration="subtract"`` subtracts the sums.

Cost: 2 forward passes per chunk (the passages once, then the query and "N/A" as one batch over their
KV cache). Candidates that do not fit ``max_context_tokens`` are split into chunks of about equal size,
and scores are compared across chunks as they are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rankwise.errors import InputError
from rankwise.llm.protocol import AttentionBackend, require
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

CALIBRATION_QUERY = "N/A"
CALIBRATIONS = ("masked", "subtract")
DEFAULT_PASSAGE_TOKENS = 128
DEFAULT_CONTEXT_TOKENS = 4096
_SEPARATOR = "\n\n"
_USER = "\x00rankwise-user\x00"


class ICR(Method):
    """Rerank by calibrated attention; ``layers``: None (all), a slice "a:b", a list "3,5" or ints.

    The prompt (``prompts/attention.icr.yaml``) has ``{passages}`` (its ``item`` per passage, blank lines
    between) and, after them, ``{query}``: the text after the passages is what reads them."""

    name = "attention.icr"

    def __init__(self, backend, layers: Sequence[int] | str | None = None, calibration: str = "masked",
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS,
                 max_context_tokens: int = DEFAULT_CONTEXT_TOKENS, calibration_query: str = CALIBRATION_QUERY,
                 prompt: str | PromptTemplate = "attention.icr"):
        require(backend, AttentionBackend, "attention.icr")
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        opening, found, closing = self.template.user.partition("{passages}")
        if not found or "{query}" not in closing or not self.template.item:
            raise InputError(f"prompt {self.template.name!r} needs {{passages}}, then {{query}}, and an item line")
        self._opening, self._closing = opening.removesuffix(_SEPARATOR), closing.removeprefix(_SEPARATOR)
        if calibration not in CALIBRATIONS:
            raise InputError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        if max_passage_tokens < 1:
            raise InputError(f"max_passage_tokens must be at least 1 (got {max_passage_tokens})")
        self.backend = backend
        self.layers = layers
        self.calibration = calibration
        self.max_passage_tokens = max_passage_tokens
        self.max_context_tokens = max_context_tokens
        self.calibration_query = calibration_query
        chat = backend.format_chat(_USER)
        self._chat_head, _, self._chat_tail = chat.partition(_USER)

    def suffix(self, query: str) -> str:
        """What follows the passages: the closing instruction, the query, the assistant header."""
        return self._closing.format(query=query) + self._chat_tail

    def segments(self, passages: Sequence[str]) -> list[str]:
        """The prefix as pieces: the opening, a separator and "[i] passage" per passage, a separator."""
        pieces = [self._chat_head + self._opening]
        for i, passage in enumerate(passages, start=1):
            pieces += [_SEPARATOR, self.template.render_item(label=str(i), passage=passage)]
        return pieces + [_SEPARATOR]

    def chunks(self, query: str, passages: Sequence[str]) -> list[range]:
        """Consecutive index ranges whose prompts fit ``max_context_tokens``, of about equal size."""
        count = self.backend.count_tokens
        suffix = max(count(self.suffix(query)), count(self.suffix(self.calibration_query)))
        fixed = count(self._chat_head + self._opening) + count(_SEPARATOR) + suffix
        costs = [count(_SEPARATOR) + count(self.template.render_item(label=str(i + 1), passage=p))
                 for i, p in enumerate(passages)]
        budget = self.max_context_tokens - fixed
        if costs and max(costs) > budget:
            raise InputError(f"max_context_tokens={self.max_context_tokens} leaves {budget} tokens for passages, "
                             f"less than one passage ({max(costs)}); raise it or lower max_passage_tokens")
        n_chunks = len(_pack(costs, budget, len(costs)))
        return _pack(costs, budget, -(-len(costs) // max(n_chunks, 1)))

    def score(self, query: Query, candidates: Sequence[Candidate], used: Usage) -> np.ndarray:
        """One calibrated attention score per candidate; the passes' usage is added to ``used``."""
        passages = [self.backend.truncate(c.content, self.max_passage_tokens) for c in candidates]
        scores = np.zeros(len(passages))
        for chunk in self.chunks(query.text, passages):
            from rankwise.llm.engines.attention import (
                prefix_attention,  # torch: only when a model runs
            )

            attention, spans = prefix_attention(
                self.backend, self.segments([passages[i] for i in chunk]),
                [self.suffix(query.text), self.suffix(self.calibration_query)], self.layers)
            spend(used, attention)
            for j, i in enumerate(chunk):
                start, end = spans[2 + 2 * j]  # segment 0 is the opening; then separator, passage, ...
                scores[i] = self._calibrated(attention[0, start:end], attention[1, start:end])
        return scores

    def _calibrated(self, real: np.ndarray, content_free: np.ndarray) -> float:
        diff = real - content_free
        if self.calibration == "masked" and len(diff) > 1:
            diff = diff[diff > diff.mean() - 2 * diff.std(ddof=1)]
        return float(diff.sum())

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        used = Usage()
        return Ranking.from_scores(query, head, self.score(query, head, used).tolist(), used)


def _pack(costs: Sequence[int], budget: int, max_items: int) -> list[range]:
    """Greedy consecutive chunks of at most ``max_items`` items and ``budget`` total cost."""
    chunks: list[range] = []
    start, used = 0, 0
    for i, cost in enumerate(costs):
        if i > start and (used + cost > budget or i - start >= max_items):
            chunks.append(range(start, i))
            start, used = i, 0
        used += cost
    if start < len(costs):
        chunks.append(range(start, len(costs)))
    return chunks


@register("attention.icr", "attention",
          "in-context reranking: calibrated attention from the query to each passage, 2 passes per chunk", (
    Option("layers", (str, list, type(None)), None, "layers read: all (None), a slice '12:', or a list '3,5'"),
    Option("calibration", str, "masked", "masked (drop outlier tokens) or subtract", CALIBRATIONS),
    Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"),
    Option("max_context_tokens", int, DEFAULT_CONTEXT_TOKENS, "prompt budget; more passages go in chunks"),
    Option("calibration_query", str, CALIBRATION_QUERY, "the content-free query"),
    Option("prompt", (str, PromptTemplate), "attention.icr", "prompt template name or YAML file")))
def icr(backend, **opts) -> ICR:
    return ICR(backend, **opts)
