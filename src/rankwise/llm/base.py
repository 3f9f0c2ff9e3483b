"""The language-model primitives every reranking method is built on, and what every engine shares."""

from __future__ import annotations

import math
from typing import Callable, Hashable, Mapping, Protocol, Sequence, runtime_checkable

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


def choice_token_ids(tokenize: "Callable[[str], list[int]]", choices: Sequence[str]) -> list[list[int]]:
    """First token id of every variant of every choice (duplicates removed, order kept).

    ``tokenize`` must not add special tokens. A choice whose variants all tokenize to nothing is an error.
    """
    out: list[list[int]] = []
    for choice in choices:
        ids: list[int] = []
        for variant in split_choice(choice):
            toks = tokenize(variant)
            if toks and toks[0] not in ids:
                ids.append(toks[0])
        if not ids:
            raise ValueError(f"choice {choice!r} has no tokens")
        out.append(ids)
    return out


def gather_choice_logprobs(logprobs: np.ndarray, choice_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """[n, vocab] log-softmax rows -> [n, n_choices], summing each choice's variants (logsumexp)."""
    cols = [np.logaddexp.reduce(logprobs[:, ids], axis=1) for ids in choice_ids]
    return np.stack(cols, axis=1).astype(np.float32)


def render_chat(template: str, messages: list[dict], bos_token: str = "", eos_token: str = "") -> str:
    """Render a Jinja chat template exactly as transformers does (sandboxed, trim_blocks/lstrip_blocks),
    with the generation prompt appended. Engines share it so one prompt string (and one cache key)
    means the same thing on every engine."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_token, eos_token=eos_token)


def chat_messages(user: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def score_from_top_logprobs(top: Mapping[Hashable, float], keys: Sequence[Sequence[Hashable]]) -> list[float]:
    """Choice scores from a first token's top-k log-probabilities (engines that only return the top k).

    Each choice is the logsumexp of its listed variants (keys: token texts or ids). A choice none of whose
    variants is listed gets a floor: its true log-probability is at most ``ub = min(smallest listed
    logprob, log(1 - listed probability mass))``; it gets ``ub - log 2``, below every listed token."""
    listed = np.array(list(top.values()), dtype=np.float64)
    unlisted_mass = max(1.0 - float(np.exp(listed).sum()), 1e-30)
    floor = min(float(listed.min()), math.log(unlisted_mass)) - math.log(2)
    row = []
    for variant_keys in keys:
        present = [top[k] for k in variant_keys if k in top]
        row.append(float(np.logaddexp.reduce(present)) if present else floor)
    return row
