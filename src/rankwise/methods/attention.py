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
from rankwise.llm.attention import prefix_attention
from rankwise.methods.base import register, register_loader, usage_since, with_tail
from rankwise.types import Candidate, Query, Ranking

INSTRUCTION = "Here are some paragraphs:"
QUERY_INSTRUCTION = "Please find information that are relevant to the following query in the paragraphs above."
CALIBRATION_QUERY = "N/A"
CALIBRATIONS = ("masked", "subtract")
DEFAULT_PASSAGE_TOKENS = 128
DEFAULT_CONTEXT_TOKENS = 4096
_SEPARATOR = "\n\n"
_USER = "\x00rankwise-user\x00"


class ICR:
    """Rerank by calibrated attention; ``layers``: None (all), a slice "a:b", a list "3,5" or ints."""

    name = "attention.icr"

    def __init__(self, backend, layers: Sequence[int] | str | None = None, calibration: str = "masked",
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS,
                 max_context_tokens: int = DEFAULT_CONTEXT_TOKENS, calibration_query: str = CALIBRATION_QUERY):
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
        return f"{QUERY_INSTRUCTION}{_SEPARATOR}Query: {query}{self._chat_tail}"

    def segments(self, passages: Sequence[str]) -> list[str]:
        """The prefix as pieces: the opening, a separator and "[i] passage" per passage, a separator."""
        pieces = [self._chat_head + INSTRUCTION]
        for i, passage in enumerate(passages, start=1):
            pieces += [_SEPARATOR, f"[{i}] {passage}"]
        return pieces + [_SEPARATOR]

    def chunks(self, query: str, passages: Sequence[str]) -> list[range]:
        """Consecutive index ranges whose prompts fit ``max_context_tokens``, of about equal size."""
        count = self.backend.count_tokens
        suffix = max(count(self.suffix(query)), count(self.suffix(self.calibration_query)))
        fixed = count(self._chat_head + INSTRUCTION) + count(_SEPARATOR) + suffix
        costs = [count(_SEPARATOR) + count(f"[{i + 1}] {p}") for i, p in enumerate(passages)]
        budget = self.max_context_tokens - fixed
        if costs and max(costs) > budget:
            raise InputError(f"max_context_tokens={self.max_context_tokens} leaves {budget} tokens for passages, "
                             f"less than one passage ({max(costs)}); raise it or lower max_passage_tokens")
        n_chunks = len(_pack(costs, budget, len(costs)))
        return _pack(costs, budget, -(-len(costs) // max(n_chunks, 1)))

    def score(self, query: Query, candidates: Sequence[Candidate]) -> np.ndarray:
        passages = [self.backend.truncate(c.content, self.max_passage_tokens) for c in candidates]
        scores = np.zeros(len(passages))
        for chunk in self.chunks(query.text, passages):
            attention, spans = prefix_attention(
                self.backend, self.segments([passages[i] for i in chunk]),
                [self.suffix(query.text), self.suffix(self.calibration_query)], self.layers)
            for j, i in enumerate(chunk):
                start, end = spans[2 + 2 * j]  # segment 0 is the opening; then separator, passage, ...
                scores[i] = self._calibrated(attention[0, start:end], attention[1, start:end])
        return scores

    def _calibrated(self, real: np.ndarray, content_free: np.ndarray) -> float:
        diff = real - content_free
        if self.calibration == "masked" and len(diff) > 1:
            diff = diff[diff > diff.mean() - 2 * diff.std(ddof=1)]
        return float(diff.sum())

    def rerank(self, query: Query, candidates: Sequence[Candidate], top_k: int | None = None) -> Ranking:
        before = self.backend.usage.copy()
        head = list(candidates[: top_k or len(candidates)])
        ranked = Ranking.from_scores(query, head, self.score(query, head).tolist())
        return with_tail(query, candidates, ranked, usage_since(self.backend, before))


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


@register_loader("attention")
def _load_attention(model: str, *, engine: str = "transformers", dtype: str = "auto", cache=None,
                    batch_size: int = 16, **options):
    """A transformers backend in eager attention (ICR reads attention weights; no output cache applies)."""
    from rankwise.llm import load_backend

    if engine not in ("auto", "transformers"):
        raise InputError(f"attention methods run on the transformers engine only (got engine={engine!r})")
    return load_backend(model, engine="transformers", dtype=dtype, cache=False, batch_size=batch_size,
                        attn_implementation="eager", **options)


@register("attention.icr", "attention",
          "in-context reranking: calibrated attention from the query to each passage, 2 passes per chunk")
def icr(backend, **opts) -> ICR:
    return ICR(backend, **opts)
