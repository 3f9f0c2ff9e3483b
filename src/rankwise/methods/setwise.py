"""Setwise ranking (Zhuang et al., SIGIR 2024) and its reasoning variant (Rank-R1, Zhuang et al. 2025):
"which of these c passages (labelled A, B, C, ...) is the most relevant?", inside a sorting algorithm.

- ``setwise.heapsort``: top-k by heap sort over a (c-1)-ary heap: a node and its children are one prompt;
  the prompts of one heap depth (heap build) go to the backend as one batch;
- ``setwise.bubblesort``: k bubble-sort passes with windows of c candidates sliding up by c-1;
- ``setwise.tournament`` (TourRank, Chen et al. 2025): ``tournaments`` seeded shuffles of the candidates;
  in each round, groups of about c, the ``advance`` best of each group (picked one prompt at a time: the
  best, then the best of the rest) go on with a point each; score = points over all tournaments. A round's
  prompts of every group of every tournament go to the backend as one batch, and a group is shown in its
  shuffled order, so a position bias falls on random candidates rather than on the first stage's best;
- ``setwise.reasoning``: heap sort (or bubble sort) where the model first reasons inside
  <think>...</think> and then answers <answer>LABEL</answer>, within a token budget.

``mode="scoring"`` reads the label from the log-probabilities of the label tokens after the answer prefix;
``mode="generation"`` and ``"reasoning"`` generate and parse the label. A malformed or missing answer
(including reasoning that runs out of budget) is counted in ``Usage.parse_failures`` and decided by the
label log-probabilities instead: after the prompt for generation, after the prompt, the reasoning so far
and a forced "</think> <answer>" for reasoning. A sort's prompt shows its candidates in input order, and
equal label log-probabilities go to the candidate earliest in the input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rankwise.errors import InputError
from rankwise.llm.profiles import profile_options
from rankwise.methods import aggregation, sorting
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

DEFAULT_PASSAGE_TOKENS = 128
# As llm-rankers: X, Y, Z are left out (several tokens after "Passage" in some tokenizers).
LABELS = "ABCDEFGHIJKLMNOPQRSTUVW"
SORTS = ("heapsort", "bubblesort")
ALGORITHMS = SORTS + ("tournament",)
MODES = ("scoring", "generation", "reasoning")
PASSAGE_LINE = 'Passage {label}: "{passage}"'
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"


class Setwise(Method):
    """Setwise selection over a backend inside heap sort or bubble sort.

    ``set_size`` (c): candidates per prompt; ``k``: the depth sorted. ``answer_prefix`` is appended after
    the chat template's assistant turn ("Passage", or "<think>" for reasoning); ``reasoning_tokens`` is the
    generation budget of the reasoning mode, ``max_new_tokens`` that of the generation mode.
    ``tournaments``, ``advance``, ``seed``: the tournament's (c is its group size; it ranks every candidate).
    """

    def __init__(self, backend, algorithm: str, prompt: str | PromptTemplate | None = None,
                 mode: str = "scoring", set_size: int = 4, k: int = 10,
                 max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS, answer_prefix: str | None = None,
                 max_new_tokens: int = 8, reasoning_tokens: int = 256, tournaments: int = 5,
                 advance: int = 2, seed: int = 0):
        if algorithm not in ALGORITHMS:
            raise InputError(f"unknown setwise algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if mode not in MODES:
            raise InputError(f"unknown setwise mode {mode!r}; choose one of {', '.join(MODES)}")
        if not 2 <= set_size <= len(LABELS):
            raise InputError(f"set_size must be between 2 and {len(LABELS)} (got {set_size})")
        if algorithm == "heapsort" and set_size < 3:
            raise InputError("setwise heap sort needs set_size >= 3 (a node and at least two children)")
        if k < 1:
            raise InputError(f"k must be at least 1 (got {k})")
        if algorithm == "tournament" and not (1 <= advance < set_size and tournaments >= 1):
            raise InputError(f"a tournament needs 1 <= advance < set_size and tournaments >= 1 (got advance "
                             f"{advance}, set_size {set_size}, tournaments {tournaments})")
        reasoning = mode == "reasoning"
        prompt = prompt or ("setwise.reasoning" if reasoning else "setwise.select")
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        if mode != "scoring" and not self.template.answer_regex:
            raise InputError(f"prompt {self.template.name!r} needs an answer_regex for {mode} mode")
        if mode == "scoring" and self.template.item:
            raise InputError(f"prompt {self.template.name!r} numbers its passages: use mode generation or reasoning")
        self.backend = backend
        self.algorithm = algorithm
        self.mode = mode
        self.set_size = set_size
        self.k = k
        self.max_passage_tokens = max_passage_tokens
        self.answer_prefix = answer_prefix if answer_prefix is not None else ("<think>" if reasoning else "Passage")
        self.max_new_tokens = reasoning_tokens if reasoning else max_new_tokens
        self.tournaments = tournaments
        self.advance = advance
        self.seed = seed
        self.name = "setwise.reasoning" if reasoning else f"setwise.{algorithm}"

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        """The rendered prompt for passages labelled A, B, ... (numbered 1, 2, ... one per line when the
        template has an ``item`` line, as Rank-R1's), ending with the answer prefix."""
        if self.template.item:
            block = "\n".join(self.template.render_item(label=str(i + 1), passage=p) for i, p in enumerate(passages))
        else:
            block = "\n\n".join(PASSAGE_LINE.format(label=LABELS[i], passage=p) for i, p in enumerate(passages))
        user = self.template.render(query=query, passages=block)
        return self.backend.format_chat(user, system=self.template.system) + self.answer_prefix

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        select = _Selector(self, query.text, [self.backend.truncate(c.content, self.max_passage_tokens)
                                              for c in head])
        if self.algorithm == "tournament":
            points = aggregation.tournament_scores(len(head), select, self.set_size, self.advance,
                                                   self.tournaments, self.seed)
            select.used.parse_failures += select.failures
            return Ranking.from_scores(query, head, points, select.used)
        if self.algorithm == "heapsort":
            order = sorting.heap_top_k(len(head), select, self.k, arity=self.set_size - 1)
        else:
            order = sorting.bubble_top_k(len(head), select, self.k, window=self.set_size)
        select.used.parse_failures += select.failures
        return Ranking.from_order(query, head, order, select.used)


def label_choices(n: int) -> list[str]:
    """Choices for the first n labels, each with and without a leading space ("A| A")."""
    return [f"{c}| {c}" for c in LABELS[:n]]


def parse_label(template: PromptTemplate, text: str, n: int) -> int | None:
    """The index of the label a generated answer names, or None if it names none of the first n."""
    match = template.parse(text)
    if not match:
        return None
    label = match.group(1).upper()
    index = int(label) - 1 if label.isdigit() else LABELS.find(label)
    return index if 0 <= index < n else None


class _Selector:
    """The ``sorting.SelectBest`` of one query: one prompt per group, all groups in one backend call."""

    def __init__(self, method: Setwise, query: str, passages: list[str]):
        self.method = method
        self.query = query
        self.passages = passages
        self.failures = 0
        self.used = Usage()

    def __call__(self, groups: Sequence[Sequence[int]]) -> list[int]:
        m = self.method
        if m.algorithm != "tournament":  # a sort shows a group in input order: a bias favours the earlier
            groups = [sorted(g) for g in groups]
        prompts = [m.prompt(self.query, [self.passages[i] for i in g]) for g in groups]
        if m.mode == "scoring":
            picks = self._from_logprobs(prompts, groups)
        else:
            picks = self._from_generation(prompts, groups)
        return [g[j] for g, j in zip(groups, picks)]

    def _from_generation(self, prompts: list[str], groups: Sequence[Sequence[int]]) -> list[int]:
        m = self.method
        stop = ["</answer>"] if m.mode == "reasoning" else ["\n\n"]
        texts = spend(self.used, m.backend.generate(prompts, max_new_tokens=m.max_new_tokens, stop=stop))
        picks: list[int | None] = [parse_label(m.template, m.answer_prefix + t, len(g))
                                   for t, g in zip(texts, groups)]
        failed = [i for i, p in enumerate(picks) if p is None]
        if failed and m.template.item:  # numbered labels share first tokens ("1", "10"): no logit read-out
            self.failures += len(failed)
            return [0 if p is None else p for p in picks]  # undecided: the candidate earliest in the input
        if failed:
            self.failures += len(failed)
            retry = [self._fallback_prompt(prompts[i], texts[i]) for i in failed]
            for i, p in zip(failed, self._from_logprobs(retry, [groups[i] for i in failed])):
                picks[i] = p
        return picks  # type: ignore[return-value]

    def _fallback_prompt(self, prompt: str, text: str) -> str:
        if self.method.mode != "reasoning":
            return prompt
        thought = text.split(THINK_CLOSE)[0].rstrip()
        return f"{prompt}{thought}\n{THINK_CLOSE}\n{ANSWER_OPEN}"

    def _from_logprobs(self, prompts: list[str], groups: Sequence[Sequence[int]]) -> list[int]:
        """Per group, the position of the most likely label; equal log-probabilities go to the
        candidate earliest in the input."""
        width = max(len(g) for g in groups)
        lp = spend(self.used, self.method.backend.choice_logprobs(prompts, label_choices(width)))
        picks = []
        for row, g in zip(lp, groups):
            scores = row[: len(g)]
            best = np.flatnonzero(scores == scores.max())
            picks.append(int(min(best, key=lambda j: g[j])))
        return picks


def _options(*, mode: bool = True, algorithm: bool = False) -> tuple[Option, ...]:
    chosen = (Option("algorithm", str, "heapsort", "heapsort or bubblesort", SORTS),) if algorithm else ()
    if mode:
        chosen += (Option("mode", str, "scoring", "scoring (label logits) or generation (parse the answer)",
                          MODES[:2]),)
    return chosen + (
        Option("prompt", (str, PromptTemplate), None, "prompt template name or YAML file (default by mode)"),
        Option("set_size", int, 4, "candidates per prompt (c)"),
        Option("k", int, 10, "how many of the top to sort"),
        Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"),
        Option("answer_prefix", str, None, "text the answer starts with (default: Passage, or <think>)"),
        Option("max_new_tokens", int, 8, "generation mode: tokens per answer"),
        Option("reasoning_tokens", int, 256, "reasoning mode: tokens per answer"))


@register("setwise.heapsort", "llm", "setwise top-k by heap sort, c candidates per prompt, labels from logits",
          _options())
def heapsort(backend, **opts) -> Setwise:
    return Setwise(backend, "heapsort", **opts)


@register("setwise.bubblesort", "llm", "setwise bubble sort, windows of c candidates sliding up by c-1",
          _options())
def bubblesort(backend, **opts) -> Setwise:
    return Setwise(backend, "bubblesort", **opts)


@register("setwise.reasoning", "llm", "Rank-R1: <think> then <answer>LABEL</answer>, heap sort, token budget",
          _options(mode=False, algorithm=True))
def reasoning(backend, algorithm: str = "heapsort", **opts) -> Setwise:
    return Setwise(backend, algorithm, mode="reasoning", **profile_options(backend, "setwise.reasoning", opts))


TOURNAMENT = (Option("tournaments", int, 5, "tournaments over seeded shuffles"),
              Option("advance", int, 2, "candidates of each group that go on to the next round (< set_size)"),
              Option("seed", int, 0, "seed of the first tournament's shuffle (tournament t: seed + t)"))


@register("setwise.tournament", "llm", "TourRank: seeded tournaments of groups of c, the best advance; score = "
          "points; each round's groups of every tournament in one batch",
          tuple(o for o in _options() if o.name != "k") + TOURNAMENT)
def tournament(backend, **opts) -> Setwise:
    return Setwise(backend, "tournament", **opts)
