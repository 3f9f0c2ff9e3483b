"""Pairwise Ranking Prompting (Qin et al., NAACL 2024 Findings): "which of these two passages is more
relevant?", asked in both orders.

- ``pairwise.allpairs``: every pair, N·(N-1) prompts in one batch; a candidate's score is its wins;
- ``pairwise.heapsort``: top-k by heap sort, O(N + k log N) comparisons; each step of the heap build
  batches the comparisons of one heap depth, and extractions refill the root bottom-up (Floyd: one
  comparison per level);
- ``pairwise.sliding``: K bubble-sort passes from the bottom, K·(N-1) comparisons;
- ``pairwise.tsp`` (TSPRank, Li et al. 2024): every pair (or, with ``band``, those at most ``band`` apart in
  the input order) in one batch; the order is the path whose consecutive preferences are jointly most
  probable, a travelling-salesman path solved exactly up to ``exact_max`` candidates and by 2-opt/Or-opt
  beyond. The Usage counts the paths each solver found: ``exact_paths`` and ``heuristic_paths``.

A comparison asks (i as A, j as B) and (j as A, i as B) in the same batch. ``rule="prp"`` (the paper's):
consistent answers give the winner the comparison; inconsistent ones (position bias) give half to each,
and the algorithms break that tie by input order. ``rule="probability"``: i's share is the mean of
P(A | i first) and P(B | i second), the choice probabilities normalised over A and B. A constant bias
towards one position then cancels without erasing the preference under it: a model that answers "A"
to every prompt, but more surely when the better passage is first, still orders the passages.
``rule="bradley-terry"`` (all-pairs only): scores are Bradley-Terry strengths fitted to those mean
probabilities (``aggregation.bradley_terry``), so a narrow win counts less than a sure one; with ``band``
it ranks candidates that never met through the ones they did.
``mode="scoring"`` reads the answer from the log-probabilities of "A" and "B" after the answer prefix
("Passage"); ``mode="generation"`` generates it and parses it with the template's ``answer_regex`` (an
unparseable answer counts as undecided and as a parse failure in the Usage). The Usage counts the
comparisons asked and the ``inconsistent`` ones, whose two orders did not pick the same passage: a model
with a strong position bias shows it there.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import expit

from rankwise.errors import InputError
from rankwise.llm.profiles import profile_options
from rankwise.methods import aggregation, sorting
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

DEFAULT_PASSAGE_TOKENS = 128
ALGORITHMS = ("allpairs", "heapsort", "sliding", "tsp")
MODES = ("scoring", "generation")
RULES = ("prp", "probability", "bradley-terry")
SPARSE = ("allpairs", "tsp")  # the algorithms that take their pairs up front, all or a band


class Pairwise(Method):
    """PRP over a backend; ``algorithm`` picks which pairs are compared.

    ``k``: the depth heap sort extracts and the number of sliding passes (all-pairs ranks everything).
    ``answer_prefix`` is appended after the chat template's assistant turn, so the next token is the label.
    ``reuse_comparisons``: a pair compared once in a query is not asked again (heap sort and sliding
    windows meet the same pair repeatedly); off, the prompt counts follow the textbook formulas.
    ``band`` (tsp; all-pairs with Bradley-Terry): compare only candidates at most this many apart in the
    input order; the TSP fills the pairs not compared from a Bradley-Terry fit to those compared.
    ``exact_max`` (tsp): the most candidates solved exactly.
    """

    def __init__(self, backend, algorithm: str, prompt: str | PromptTemplate = "pairwise.prp",
                 mode: str = "scoring", k: int = 10, max_passage_tokens: int = DEFAULT_PASSAGE_TOKENS,
                 answer_prefix: str = "Passage", max_new_tokens: int = 8, reuse_comparisons: bool = True,
                 rule: str = "prp", band: int | None = None, exact_max: int = aggregation.EXACT_MAX):
        if algorithm not in ALGORITHMS:
            raise InputError(f"unknown pairwise algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if mode not in MODES:
            raise InputError(f"unknown pairwise mode {mode!r}; choose one of {', '.join(MODES)}")
        if rule not in RULES:
            raise InputError(f"unknown pairwise rule {rule!r}; choose one of {', '.join(RULES)}")
        if k < 1:
            raise InputError(f"k must be at least 1 (got {k})")
        if rule == "bradley-terry" and algorithm != "allpairs":
            raise InputError("rule bradley-terry fits scores to every comparison: use it with pairwise.allpairs")
        if band is not None and (band < 1 or not (algorithm == "tsp" or rule == "bradley-terry")):
            raise InputError(f"band (a positive number; got {band}) applies to pairwise.tsp and to pairwise.allpairs "
                             "with rule bradley-terry (wins counted over a band would favour its edges)")
        self.backend = backend
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        if mode == "scoring" and len(self.template.choices) != 2:
            raise InputError(f"prompt {self.template.name!r} needs two choices (A, B) for scoring mode")
        if mode == "generation" and not self.template.answer_regex:
            raise InputError(f"prompt {self.template.name!r} needs an answer_regex for generation mode")
        self.algorithm = algorithm
        self.mode = mode
        self.k = k
        self.max_passage_tokens = max_passage_tokens
        self.answer_prefix = answer_prefix
        self.max_new_tokens = max_new_tokens
        self.reuse_comparisons = reuse_comparisons
        self.rule = rule
        self.band = band
        self.exact_max = exact_max
        self.name = f"pairwise.{algorithm}"

    def prompt(self, query: str, passage_a: str, passage_b: str) -> str:
        """The rendered prompt, ending with the answer prefix the model continues from."""
        user = self.template.render(query=query, passage_a=passage_a, passage_b=passage_b)
        return self.backend.format_chat(user, system=self.template.system) + self.answer_prefix

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        judge = _Judge(self, query.text, [self.backend.truncate(c.content, self.max_passage_tokens) for c in head])
        n = len(head)
        usage = judge.used
        scores, order = None, None
        if self.algorithm in SPARSE:
            scores, order = self._aggregate(n, judge, usage)
        elif self.algorithm == "heapsort":
            order = sorting.heap_top_k(n, sorting.knockout(judge), self.k, bottom_up=True)
        else:
            order = sorting.sliding_order(n, judge, min(self.k, max(n - 1, 0)))
        usage.parse_failures += judge.failures
        usage.comparisons += judge.comparisons
        usage.inconsistent += judge.inconsistent
        if scores is not None:
            return Ranking.from_scores(query, head, scores, usage)
        return Ranking.from_order(query, head, order, usage)

    def _aggregate(self, n: int, judge: _Judge, usage: Usage) -> tuple[list[float] | None, list[int] | None]:
        """All-pairs scores or the TSP order, from the preferences of every pair or of the band."""
        if self.algorithm == "allpairs" and self.rule != "bradley-terry":
            return sorting.allpairs_scores(n, judge), None
        pairs = aggregation.band_pairs(n, self.band)
        p = aggregation.preferences(n, judge, pairs)
        if self.algorithm == "tsp":
            if self.band is not None:
                p = aggregation.completed(p, _met(n, pairs))
            order, solver = aggregation.tsp_order(p, self.exact_max)
            usage.exact_paths += solver != aggregation.HEURISTIC
            usage.heuristic_paths += solver == aggregation.HEURISTIC
            return None, order
        return aggregation.bradley_terry(p, _met(n, pairs)), None


def _met(n: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """The symmetric mask of the pairs compared."""
    mask = np.zeros((n, n), dtype=bool)
    for a, b in pairs:
        mask[a, b] = mask[b, a] = True
    return mask


class _Judge:
    """The ``sorting.Prefer`` of one query: both orders of every pair in one backend call."""

    def __init__(self, method: Pairwise, query: str, passages: list[str]):
        self.method = method
        self.query = query
        self.passages = passages
        self.failures = 0
        self.used = Usage()
        self.comparisons = 0
        self.inconsistent = 0  # comparisons whose two orders did not pick the same passage
        self.known: dict[tuple[int, int], float] = {}  # (a, b) with a < b -> a's share

    def __call__(self, pairs: Sequence[tuple[int, int]]) -> list[float]:
        m, p = self.method, self.passages
        keys = [(min(a, b), max(a, b)) for a, b in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in self.known)) if m.reuse_comparisons else keys
        prompts = [m.prompt(self.query, p[x], p[y]) for a, b in todo for x, y in ((a, b), (b, a))]
        votes = self._votes_for_a(prompts) if prompts else []
        # votes[2i]: a was shown first; votes[2i+1]: b was shown first, so a wins when B is chosen.
        share = _prp_share if m.rule == "prp" else _mean_share
        shares = {key: share(votes[2 * i], 1.0 - votes[2 * i + 1]) for i, key in enumerate(todo)}
        self.comparisons += len(todo)
        self.inconsistent += sum(not _agree(votes[2 * i], 1.0 - votes[2 * i + 1]) for i in range(len(todo)))
        if m.reuse_comparisons:
            self.known.update(shares)
            shares = self.known
        return [shares[k] if k == (a, b) else 1.0 - shares[k] for k, (a, b) in zip(keys, pairs)]

    def _votes_for_a(self, prompts: list[str]) -> list[float]:
        """Per prompt: 1 if the model picks passage A, 0 if B, 0.5 if it cannot tell (rule "probability",
        scoring mode: P(A) normalised over A and B)."""
        m = self.method
        if m.mode == "scoring":
            lp = np.asarray(spend(self.used, m.backend.choice_logprobs(prompts, m.template.choices)), dtype=np.float64)
            if m.rule != "prp":
                return expit(lp[:, 0] - lp[:, 1]).tolist()
            return np.where(lp[:, 0] > lp[:, 1], 1.0, np.where(lp[:, 0] < lp[:, 1], 0.0, 0.5)).tolist()
        votes = []
        for text in spend(self.used, m.backend.generate(prompts, max_new_tokens=m.max_new_tokens, stop=["\n\n"])):
            match = m.template.parse(text)
            label = match.group(1).upper() if match else None
            if label not in ("A", "B"):
                self.failures += 1
            votes.append(1.0 if label == "A" else 0.0 if label == "B" else 0.5)
        return votes


def _prp_share(first: float, second: float) -> float:
    """PRP's rule over the two orders (each a's share from one prompt): agree -> that, else a draw."""
    return first if first == second and first in (0.0, 1.0) else 0.5


def _agree(first: float, second: float) -> bool:
    """Whether both orders preferred the same passage (a's share above one half in both, or below)."""
    return (first - 0.5) * (second - 0.5) > 0


def _mean_share(first: float, second: float) -> float:
    """The mean of a's two shares; rounded so that mirror-image answers make an exact draw."""
    return round((first + second) / 2, 9)


OPTIONS = (
    Option("prompt", (str, PromptTemplate), "pairwise.prp", "prompt template name or YAML file"),
    Option("mode", str, "scoring", "scoring (P(A) vs P(B)) or generation (parse the answer)", MODES),
    Option("k", int, 10, "heapsort/sliding: how many of the top to sort"),
    Option("max_passage_tokens", int, DEFAULT_PASSAGE_TOKENS, "cut each passage to this many tokens"),
    Option("answer_prefix", str, "Passage", "text the answer starts with"),
    Option("max_new_tokens", int, 8, "generation mode: tokens per answer"),
    Option("reuse_comparisons", bool, True, "ask each pair once per query"),
    Option("rule", str, "prp", "prp (both orders must agree, else a draw), probability (mean P(A)) or "
           "bradley-terry (all-pairs: strengths fitted to the mean P(A))", RULES),
    Option("band", int, None, "tsp, allpairs with bradley-terry: compare only candidates at most this many "
           "apart in the input order (default: every pair)"),
    Option("exact_max", int, aggregation.EXACT_MAX, "tsp: solve exactly (Held-Karp) up to this many "
           "candidates, by 2-opt/Or-opt beyond"))


@register("pairwise.allpairs", "llm", "PRP all pairs in both orders, one batch; score = wins", OPTIONS)
def allpairs(backend, **opts) -> Pairwise:
    return Pairwise(backend, "allpairs", **profile_options(backend, "pairwise.allpairs", opts))


@register("pairwise.heapsort", "llm", "PRP top-k by heap sort, comparisons of one heap depth batched", OPTIONS)
def heapsort(backend, **opts) -> Pairwise:
    return Pairwise(backend, "heapsort", **profile_options(backend, "pairwise.heapsort", opts))


@register("pairwise.sliding", "llm", "PRP sliding window: K bubble-sort passes from the bottom", OPTIONS)
def sliding(backend, **opts) -> Pairwise:
    return Pairwise(backend, "sliding", **profile_options(backend, "pairwise.sliding", opts))


@register("pairwise.tsp", "llm", "TSPRank: both orders of every pair (or a band) in one batch; the order is the "
          "most probable path (exact up to exact_max candidates)", OPTIONS)
def tsp(backend, **opts) -> Pairwise:
    return Pairwise(backend, "tsp", **profile_options(backend, "pairwise.tsp", opts))
