"""Listwise reranking: the model reads a window of candidates at once and orders them.

- ``listwise.window``: RankGPT / RankZephyr sliding windows (size w=20, step s=10, back to front,
  ceil((N - w) / s) + 1 windows); the model writes a permutation such as ``[3] > [1] > [2]``;
- ``listwise.first``: FIRST (Reddy et al. 2024): one forward pass per window, the window ordered by the
  log-probabilities of the single-token identifiers [A]..[T] as the first generated token;
- ``listwise.full``: the whole candidate list in one window, when the prompt and its answer fit
  ``max_context`` tokens (``overflow="error"`` says so; ``overflow="window"`` falls back to windows);
- ``listwise.insertrank``: InsertRank: windows whose prompt shows each candidate's first-stage score;
- ``listwise.tdpart``: top-down partitioning (Parry et al., SIGIR 2024): a pivot from the first window,
  the rest partitioned against it, only the head refined.

Every name takes ``mode="generate"`` (parse the generated permutation) or ``mode="first"`` (identifier
logits), and the window methods take ``algorithm``. A generated permutation is parsed robustly (see
``permutation.parse_permutation``); each answer that needed repair counts in ``Usage.parse_failures``.
"""

from __future__ import annotations

import logging
import string
from typing import Sequence

from rankwise.errors import InputError
from rankwise.llm.profiles import profile_options
from rankwise.methods import permutation
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

log = logging.getLogger(__name__)

DEFAULT_PASSAGE_TOKENS = 128
DEFAULT_MAX_CONTEXT = 8192
ALGORITHMS = ("window", "full", "tdpart")
MODES = ("generate", "first")
OVERFLOW = ("error", "window")
COUNTDOWN = ("keep_input", "accept")
LETTERS = string.ascii_uppercase
DEFAULT_PROMPTS = {"numeric": "listwise.rankgpt", "alpha": "listwise.rankgpt.alpha"}
COUNTDOWN_MIN = 5  # shorter windows reversed can be a real answer
THINK_OPEN, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "<answer>", "</answer>"


def answer_section(text: str) -> str:
    """What stands after the last ``<answer>`` (up to ``</answer>``); empty when there is no answer tag."""
    if ANSWER_OPEN not in text:
        return ""
    return text.rsplit(ANSWER_OPEN, 1)[1].split(ANSWER_CLOSE, 1)[0]


def is_countdown(order: Sequence[int]) -> bool:
    """Whether a generated window order is the shown order reversed ("[10] > [9] > ... > [1]").

    Small models count the identifiers down instead of ranking; a ranking of 5 or more passages that is
    exactly the first stage backwards is almost never a judgement (with graded relevance it takes ties
    broken backwards), so it is treated as no answer.
    """
    return len(order) >= COUNTDOWN_MIN and list(order) == list(range(len(order) - 1, -1, -1))


def labels_for(n: int, style: str) -> list[str]:
    """Identifiers of n items: "1".."n" (numeric) or "A".. (alpha, at most 26)."""
    if style == "alpha":
        if n > len(LETTERS):
            raise InputError(f"alphabetic identifiers label at most {len(LETTERS)} passages (got {n})")
        return list(LETTERS[:n])
    return [str(i + 1) for i in range(n)]


def render_list(template: PromptTemplate, labels: Sequence[str], passages: Sequence[str],
                scores: Sequence[float] | None = None) -> str:
    """The template's item line of every passage, one per line (``{score}`` is the first-stage score)."""
    scores = scores if scores is not None else [0.0] * len(passages)
    return "\n".join(template.render_item(label=label, passage=passage, score=f"{score:.2f}")
                     for label, passage, score in zip(labels, passages, scores))


class Listwise(Method):
    """A listwise reranker: an algorithm (window, full, tdpart) over a window ranker (generate, first).

    ``window_size``/``step``: sliding windows; ``cutoff``/``buffer``: TDPart's pivot position and candidate
    budget; ``max_context``: the model's context in tokens (``listwise.full``); ``tokens_per_item``: the
    generation budget per identifier of a window; ``countdown``: what to do with a generated window that
    is the shown order reversed (``"keep_input"``: keep the window as it was and count a parse failure;
    ``"accept"``: use it); ``answer_prefix`` (generate mode): the text written after the assistant turn that
    the model continues (default: ``<think>`` with ``reasoning_tokens``, else ``[`` or nothing, as the
    tokenizer splits identifiers).
    """

    def __init__(self, backend, algorithm: str, *, name: str, mode: str = "generate",
                 prompt: str | PromptTemplate | None = None, labels: str | None = None,
                 window_size: int = 20, step: int = 10, cutoff: int = 10, buffer: int = 20,
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS, max_context: int = DEFAULT_MAX_CONTEXT,
                 overflow: str = "error", tokens_per_item: int = 5, countdown: str = "keep_input",
                 reasoning_tokens: int = 0, answer_prefix: str | None = None):
        if algorithm not in ALGORITHMS:
            raise InputError(f"unknown listwise algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if mode not in MODES:
            raise InputError(f"unknown listwise mode {mode!r}; choose one of {', '.join(MODES)}")
        if overflow not in OVERFLOW:
            raise InputError(f"unknown overflow {overflow!r}; choose one of {', '.join(OVERFLOW)}")
        if countdown not in COUNTDOWN:
            raise InputError(f"unknown countdown {countdown!r}; choose one of {', '.join(COUNTDOWN)}")
        if window_size < 2 or not 1 <= step <= window_size:
            raise InputError(f"need window_size >= 2 and 1 <= step <= window_size (got {window_size}, {step})")
        if algorithm == "tdpart" and not 1 <= cutoff < window_size:
            raise InputError(f"tdpart needs 1 <= cutoff < window_size (got cutoff {cutoff}, window {window_size})")
        if reasoning_tokens < 0 or (reasoning_tokens and mode != "generate"):
            raise InputError(f"reasoning_tokens needs mode generate and must be at least 0 (got {reasoning_tokens})")
        if answer_prefix is not None and mode != "generate":
            raise InputError("answer_prefix applies to mode generate (FIRST's prefix follows its identifiers)")
        if algorithm == "tdpart" and buffer < cutoff:
            raise InputError(f"tdpart needs buffer >= cutoff (got buffer {buffer}, cutoff {cutoff})")
        self.labels = labels or ("alpha" if mode == "first" else "numeric")
        if self.labels not in DEFAULT_PROMPTS:
            raise InputError(f"unknown labels {self.labels!r}; choose one of {', '.join(DEFAULT_PROMPTS)}")
        if mode == "first" and self.labels != "alpha":
            raise InputError("FIRST reads single-token identifiers: it needs labels='alpha'")
        if self.labels == "alpha" and (algorithm == "full" or window_size > len(LETTERS)):
            raise InputError(f"alphabetic identifiers label at most {len(LETTERS)} passages: use windows of "
                             f"at most {len(LETTERS)} (got algorithm {algorithm!r}, window_size {window_size})")
        prompt = prompt or DEFAULT_PROMPTS[self.labels]
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        if not self.template.item or not self.template.answer_regex:
            raise InputError(f"prompt {self.template.name!r} needs an item line and an answer_regex")
        self.backend = backend
        self.name = name
        self.algorithm = algorithm
        self.mode = mode
        self.window_size = window_size
        self.step = step
        self.cutoff = cutoff
        self.buffer = buffer
        self.max_passage_tokens = max_passage_tokens
        self.max_context = max_context
        self.overflow = overflow
        self.tokens_per_item = tokens_per_item
        self.countdown = countdown
        self.reasoning_tokens = reasoning_tokens
        prefix, self.choices = self._identifier_tokens()
        self.answer_prefix = prefix if answer_prefix is None else answer_prefix

    def _identifier_tokens(self) -> tuple[str, list[str]]:
        """The answer prefix after the chat template, and FIRST's choices (one per identifier).

        When "[A" is one token (Qwen), the answer starts right after the assistant turn and the choices
        are "[A", "[B", ...; when it is two ("[" + "A"), the prefix is "[" and the choices "A", "B", ...
        """
        labels = labels_for(self.window_size if self.labels == "alpha" else 1, self.labels)
        if self.reasoning_tokens:
            return THINK_OPEN, []
        merged = all(self.backend.count_tokens("[" + label) == 1 for label in labels)
        if self.mode == "generate":
            return ("" if merged else "["), []
        if merged:
            return "", ["[" + label for label in labels]
        several = [label for label in labels if self.backend.count_tokens(label) != 1]
        if several:
            raise InputError(f"FIRST needs single-token identifiers; {', '.join(several)} take several "
                             "tokens in this model's tokenizer")
        return "[", labels

    def prompt(self, query: str, passages: Sequence[str], scores: Sequence[float] | None = None) -> str:
        """The rendered window prompt, ending with the answer prefix the model continues from."""
        labels = labels_for(len(passages), self.labels)
        user = self.template.render(query=query, num=str(len(passages)),
                                    passages=render_list(self.template, labels, passages, scores))
        return self.backend.format_chat(user, system=self.template.system) + self.answer_prefix

    def max_new_tokens(self, n: int) -> int:
        return self.reasoning_tokens + self.tokens_per_item * n + 4

    def read_permutation(self, text: str, n: int) -> permutation.ParsedPermutation:
        """The permutation a generated window answer (the answer prefix included) gives; with reasoning,
        only what stands inside <answer> </answer> counts (the thoughts name identifiers too)."""
        shown = answer_section(text) if self.reasoning_tokens else text
        return permutation.parse_permutation(shown, labels_for(n, self.labels), self.template.answer_regex)

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        ranker = _WindowRanker(self, query.text, [self.backend.truncate(c.content, self.max_passage_tokens)
                                                  for c in head], [c.score for c in head])
        n = len(head)
        if self.algorithm == "tdpart":
            order = permutation.tdpart(n, self.window_size, self.cutoff, self.buffer, ranker)
        elif self.algorithm == "full" and self._fits(ranker, query.text):
            order = ranker(list(range(n))) if n > 1 else list(range(n))
        else:
            order = permutation.sliding_windows(n, self.window_size, self.step, ranker)
        ranker.used.parse_failures += ranker.failures
        return Ranking.from_order(query, head, order, ranker.used)

    def _fits(self, ranker: "_WindowRanker", query: str) -> bool:
        """Whether all candidates fit one window; if not, an error or (overflow="window") windows."""
        n = len(ranker.passages)
        need = self.backend.count_tokens(self.prompt(query, ranker.passages, ranker.scores)) + self.max_new_tokens(n)
        if need <= self.max_context:
            return True
        message = (f"{self.name}: {n} passages need {need} tokens (prompt and answer), more than "
                   f"max_context={self.max_context}")
        if self.overflow == "error":
            raise InputError(message + "; pass overflow='window', fewer candidates, shorter passages "
                             "(max_passage_tokens) or a larger max_context")
        log.warning("%s; ranking in sliding windows of %d instead", message, self.window_size)
        return False


class _WindowRanker:
    """The ``permutation.RankWindow`` of one query: one backend call per window."""

    def __init__(self, method: Listwise, query: str, passages: list[str], scores: list[float]):
        self.method = method
        self.query = query
        self.passages = passages
        self.scores = scores
        self.failures = 0
        self.used = Usage()

    def __call__(self, items: list[int]) -> list[int]:
        m = self.method
        prompt = m.prompt(self.query, [self.passages[i] for i in items], [self.scores[i] for i in items])
        if m.mode == "first":
            logprobs = spend(self.used, m.backend.choice_logprobs([prompt], m.choices[: len(items)]))[0]
            positions = sorted(range(len(items)), key=lambda j: -logprobs[j])  # ties: window order
        else:
            stop = [ANSWER_CLOSE] if m.reasoning_tokens else ["\n\n"]
            text = spend(self.used, m.backend.generate([prompt], max_new_tokens=m.max_new_tokens(len(items)),
                                                       stop=stop))[0]
            parsed = m.read_permutation(m.answer_prefix + text, len(items))
            positions = parsed.order
            if m.countdown == "keep_input" and is_countdown(positions):
                positions = list(range(len(items)))
                self.failures += 1
            else:
                self.failures += parsed.repaired
        self.used.windows += 1
        self.used.unchanged_windows += positions == list(range(len(items)))
        return [items[j] for j in positions]


def _options(*, algorithm: bool = True, prompt: str | None = None, mode: bool = True) -> tuple[Option, ...]:
    """The options of a listwise name (``algorithm`` and ``mode`` only where the name does not fix them)."""
    chosen = (Option("algorithm", str, "window", "window (sliding windows), full or tdpart", ALGORITHMS),) \
        if algorithm else ()
    if mode:
        chosen += (Option("mode", str, "generate", "generate (parse the permutation) or first (identifier logits)",
                          MODES),)
    return chosen + (
        Option("prompt", (str, PromptTemplate), prompt, "prompt template name or YAML file (default by labels)"),
        Option("labels", str, None, "identifiers: numeric [1].. or alpha [A].. (default: alpha for first)",
               (None, *DEFAULT_PROMPTS)),
        Option("window_size", int, 20, "passages per window"),
        Option("step", int, 10, "how far each window moves (back to front)"),
        Option("cutoff", int, 10, "tdpart: the pivot's position"),
        Option("buffer", int, 20, "tdpart: candidates kept around the pivot"),
        Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"),
        Option("max_context", int, DEFAULT_MAX_CONTEXT, "the model's context in tokens (listwise.full)"),
        Option("overflow", str, "error", "listwise.full when the list does not fit: error or window", OVERFLOW),
        Option("tokens_per_item", int, 5, "generation budget per identifier"),
        Option("countdown", str, "keep_input", "a window answered in reversed input order: keep_input or accept",
               COUNTDOWN),
        Option("reasoning_tokens", int, 0, "ReasonRank: reason in <think> (this many tokens), then answer in "
                                           "<answer> </answer>; 0: answer directly"),
        Option("answer_prefix", str, None, "generate: the text the answer starts with (default: <think> with "
                                           "reasoning_tokens, else '[' or nothing, by the tokenizer)"))


@register("listwise.window", "llm", "RankGPT sliding windows (w=20, s=10, back to front), generated permutations",
          _options())
def window(backend, algorithm: str = "window", **opts) -> Listwise:
    return Listwise(backend, algorithm, name="listwise.window", **profile_options(backend, "listwise.window", opts))


@register("listwise.first", "llm", "FIRST: windows ordered by the logits of single-token identifiers, one pass each",
          _options(mode=False))
def first(backend, algorithm: str = "window", **opts) -> Listwise:
    return Listwise(backend, algorithm, name="listwise.first", mode="first",
                    **profile_options(backend, "listwise.first", opts))


@register("listwise.full", "llm", "the whole candidate list in one window, when it fits max_context",
          _options(algorithm=False))
def full(backend, **opts) -> Listwise:
    return Listwise(backend, "full", name="listwise.full", **profile_options(backend, "listwise.full", opts))


@register("listwise.insertrank", "llm", "InsertRank: sliding windows whose prompt shows the first-stage scores",
          _options(prompt="listwise.insertrank"))
def insertrank(backend, algorithm: str = "window", prompt: str = "listwise.insertrank", **opts) -> Listwise:
    return Listwise(backend, algorithm, name="listwise.insertrank", prompt=prompt, **opts)


@register("listwise.tdpart", "llm", "top-down partitioning: a pivot window, the rest partitioned, the head refined",
          _options(algorithm=False))
def tdpart(backend, **opts) -> Listwise:
    return Listwise(backend, "tdpart", name="listwise.tdpart", **profile_options(backend, "listwise.tdpart", opts))
