"""The language-model primitives every reranking method is built on, and what every engine shares."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from rankwise.types import Usage


@runtime_checkable
class Backend(Protocol):
    """An engine that runs one model. Methods only ever call these primitives.

    Prompts are plain strings, already rendered (chat templates applied by ``format_chat``).
    """

    name: str          # model name as resolved (for cache keys and reports)
    engine: str        # "transformers", "llamacpp", "openai", "sentence-transformers", ...
    dtype: str         # "float32", "bfloat16", "q4_k_m", ...
    usage: Usage       # running totals, owned by the backend

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        """Log-probability of each choice's first token as the next token after each prompt.

        Returns float32 [len(prompts), len(choices)]. A choice given as "Yes|yes| Yes" sums the
        probabilities of its variants (logsumexp), so tokenizer quirks do not split the mass.
        """
        ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Greedy continuation of each prompt."""
        ...

    def format_chat(self, user: str, system: str | None = None) -> str:
        """Render one user turn with the model's chat template, ready for the assistant's answer."""
        ...

    def count_tokens(self, text: str) -> int:
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut text to at most max_tokens tokens of this model's tokenizer."""
        ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    name: str
    engine: str
    usage: Usage

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 [len(texts), d]."""
        ...


def split_choice(choice: str) -> list[str]:
    """'Yes|yes| Yes' -> ['Yes', 'yes', ' Yes'] (the variants whose probabilities are summed)."""
    return [v for v in choice.split("|") if v != ""]
