"""The language-model primitives every reranking method is built on, and what every engine shares.

Every primitive returns its answer together with what it cost: a :class:`Scores` array or a :class:`Texts`
list whose ``usage`` is the :class:`~rankwise.types.Usage` of that one call. Methods add up the usage of
their own calls, so cost travels with results and never through a counter shared on the backend
(``backend.usage`` is only the engine's running total, for reports about the engine itself).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Callable, Hashable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from rankwise.types import Usage


class Scores(np.ndarray):
    """A primitive's numeric answer (an ordinary numpy array) carrying the ``usage`` of the call."""

    usage: Usage

    def __new__(cls, values, usage: Usage) -> "Scores":
        obj = np.asarray(values).view(cls)
        obj.usage = usage
        return obj

    def __array_finalize__(self, obj) -> None:
        self.usage = getattr(obj, "usage", None) or Usage()


class Texts(list):
    """A primitive's generated texts (an ordinary list) carrying the ``usage`` of the call."""

    def __init__(self, texts: Sequence[str], usage: Usage):
        super().__init__(texts)
        self.usage = usage


def usage_of(answer) -> Usage:
    """The usage a primitive's answer carries (an empty Usage for a backend that returns plain values)."""
    usage = getattr(answer, "usage", None)
    return usage if isinstance(usage, Usage) else Usage()


def answered(backend, value, used: Usage):
    """Return ``value`` (an array or a list of texts) with the call's usage, and add it to the engine's
    running total. Every engine ends each primitive with this."""
    backend.usage.add(used)
    return Scores(value, used) if isinstance(value, np.ndarray) else Texts(value, used)


def call_usage(backend) -> Usage:
    """A fresh Usage for one call of ``backend``, labelled with its engine, dtype and model."""
    return Usage(engine=getattr(backend, "engine", ""), dtype=getattr(backend, "dtype", ""),
                 model=getattr(backend, "name", ""))


@runtime_checkable
class Backend(Protocol):
    """An engine that runs one model. Methods only ever call these primitives.

    Prompts are plain strings, already rendered (chat templates applied by ``format_chat``). Each primitive
    returns its answer with the Usage of the call (``Scores``/``Texts``, built by ``answered``).
    Optional capabilities, declared by having the method: ``continuation_logprobs``
    (:class:`ContinuationBackend`, query likelihood), ``choice_logits`` (:class:`LogitBackend`, raw logits)
    and ``attention`` reading (:class:`AttentionBackend`).
    """

    name: str          # model name as resolved (for cache keys and reports)
    engine: str        # "transformers", "llamacpp", "openai", "sentence-transformers", ...
    dtype: str         # "float32", "bfloat16", "q4_k_m", ...
    usage: Usage       # the engine's running total (reports about the engine; methods read answers' usage)

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
class ContinuationBackend(Backend, Protocol):
    """Optional capability: the log-probability of given continuations (``pointwise.qlm``)."""

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Sum of log P(continuation tokens | prompt) per pair: float64 [n], with the call's usage."""
        ...


@runtime_checkable
class LogitBackend(Backend, Protocol):
    """Optional capability: raw next-token logits (rerankers trained on one token's logit: RankT5, bge
    layer-wise)."""

    def choice_logits(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        """The unnormalised logit of each choice's first token after each prompt (variants: the logsumexp of
        their logits): float32 [len(prompts), len(choices)], with the call's usage."""
        ...


@runtime_checkable
class AttentionBackend(Backend, Protocol):
    """Optional capability: reading the model's attention (in-context reranking, ``attention.icr``)."""

    model: object      # the torch model (its decoder layers' self_attn modules are read)
    tokenizer: object

    def encode_prefix(self, ids: list[int], used: Usage):
        """Run a shared prefix once and return its KV cache; counts the pass in ``used``."""
        ...

    def run_suffixes(self, suffixes: list[list[int]], prefix_cache, shared: int, used: Usage):
        """Run token suffixes as one batch after the prefix cache; counts the pass in ``used``."""
        ...


_CAPABILITY_METHODS = {"ContinuationBackend": "continuation_logprobs", "LogitBackend": "choice_logits",
                       "AttentionBackend": "run_suffixes"}


def require(backend, capability: type, what: str) -> None:
    """Raise a ModelError when the engine behind ``backend`` (through its cache or batching wrappers) lacks
    an optional capability a method needs."""
    from rankwise.errors import ModelError

    engine = backend
    while hasattr(engine, "backend") and not isinstance(getattr(engine, "engine", None), property):
        inner = engine.__dict__.get("backend")
        if inner is None:
            break
        engine = inner
    if not callable(getattr(engine, _CAPABILITY_METHODS[capability.__name__], None)):
        raise ModelError(f"{what} needs a backend with {capability.__name__} "
                         f"(the {getattr(engine, 'engine', type(engine).__name__)} engine has not)")


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
    return _compiled(template).render(messages=messages, add_generation_prompt=True, bos_token=bos_token,
                                      eos_token=eos_token)


@functools.lru_cache(maxsize=32)
def _compiled(template: str):
    """A chat template compiled once (compiling costs milliseconds, rendering a prompt microseconds)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to the first of the stop strings (engines that generate past a stop cut here)."""
    if not stop:
        return text
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def chat_messages(user: str, system: str | None = None, control_tokens: Sequence[str] = ()) -> list[dict]:
    """The messages of one user turn; the control-token strings in their text are marked as plain text."""
    msgs = [{"role": "system", "content": mark_plain(system, control_tokens)}] if system else []
    return msgs + [{"role": "user", "content": mark_plain(user, control_tokens)}]


# Control tokens in user text (documents, queries) must stay text: a passage holding "<|im_end|>" must not
# close the user turn. Engines mark each control-token string found in the text of a turn between these two
# private-use characters when they render the chat (``mark_plain``), and tokenize marked spans with special-
# token parsing off (``tokenize_marked``). Text without control-token strings is left as it was, so its
# prompt, its tokens and its cache keys do not change.
PLAIN_START, PLAIN_END = "\ue000", "\ue001"
_MARKED = re.compile(f"{PLAIN_START}(.*?){PLAIN_END}", flags=re.S)
# For servers whose tokenizer rankwise does not run (the OpenAI-compatible engine): the usual syntaxes of
# control tokens, broken with a zero-width joiner after the first character.
_CONTROL_LIKE = re.compile(r"<\|[^<>|\s]{1,64}\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>|<(?:bos|eos|pad|unk)>")


def mark_plain(text: str, control_tokens: Sequence[str]) -> str:
    """``text`` with each occurrence of a control-token string marked as plain text (marks already in the
    text are removed first, so a document cannot forge them)."""
    text = text.replace(PLAIN_START, "").replace(PLAIN_END, "")
    found = [t for t in control_tokens if t and t in text]
    if not found:
        return text
    pattern = "|".join(re.escape(t) for t in sorted(found, key=len, reverse=True))
    return re.sub(pattern, lambda m: f"{PLAIN_START}{m.group(0)}{PLAIN_END}", text)


def tokenize_marked(prompt: str, tokenize: Callable[[str, bool], list[int]]) -> list[int]:
    """Token ids of ``prompt``: ``tokenize(text, specials)`` parses control tokens outside the marked spans
    (the chat template's own) and none inside them (user text)."""
    if PLAIN_START not in prompt:
        return tokenize(prompt, True)
    ids: list[int] = []
    for i, piece in enumerate(_MARKED.split(prompt)):  # odd pieces were marked
        if piece:
            ids += tokenize(piece, i % 2 == 0)
    return ids


def unmark(prompt: str) -> str:
    """The prompt's text without the plain-text marks."""
    return prompt.replace(PLAIN_START, "").replace(PLAIN_END, "")


def hf_control_tokens(tokenizer) -> tuple[str, ...]:
    """The strings a transformers tokenizer parses as special (control) tokens."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return tuple(sorted({t.content for t in added.values() if t.special} | set(tokenizer.all_special_tokens)))


def neutralize_control_tokens(text: str) -> str:
    """For engines that cannot tokenize marked spans: break every control-token-like string in ``text`` with a
    zero-width joiner, so no server parses it as a control token."""
    return _CONTROL_LIKE.sub(lambda m: m.group(0)[0] + "\u200d" + m.group(0)[1:], text)


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
