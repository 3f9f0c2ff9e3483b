"""Training rows for causal-LM rerankers, rendered by the method's own prompt code.

The target method is built over a TransformersBackend that wraps the model being trained, and renders every
training prompt: the text, the passage truncation, the chat template and the answer prefix are the ones
inference uses, so the trained answer is read from exactly the prompt ``rankwise rerank --method <target>
--model DIR`` shows the model. Per family, one group of ``data.group_size`` passages becomes:

- pointwise (``pointwise.yes_no``, ``pointwise.graded``): one prompt per passage; the answer is one token
  (Yes/No from the grade threshold, or the grade 0..k);
- listwise (``listwise.window``, ``listwise.full``: RankZephyr; ``listwise.first``: FIRST): one window of the
  group's passages in a seeded order; the answer is the permutation by grade ("[2] > [1] > [3]", ties in
  the order shown: at inference, what the model cannot tell apart keeps the first stage's order) and the
  end of the turn; for ``listwise.first`` also the identifier tokens in that order, for FIRST's ranking
  loss on the first answer position;
- setwise (``setwise.heapsort`` / ``bubblesort`` / ``tournament`` in scoring mode, llm-rankers' setting):
  one set in a seeded order; the answer is the label token of the most relevant passage;
- groupwise (``groupwise.generate``: GroupRank's cold start): one group in a seeded order; the answer is
  the passages' grades in that order on the prompt's scale, as the prompt asks for them: a JSON list for a
  list prompt (``groupwise.json``, 0..3: "[0, 3, 1, 0, 0]", after the method's answer prefix), else one
  line per passage (``groupwise.score``, 0..10: "Document [1] score: 0"), and the end of the turn.

With a teacher (rankwise.train.teacher), its scores replace the grades: listwise and setwise answers follow
its order, groupwise answers are its scores on the prompt's scale (min-max over the query's candidates:
GroupRank's cold start learns graded scores from a teacher), and pointwise rows carry its scores for the
distillation loss.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rankwise.errors import InputError
from rankwise.llm.protocol import choice_token_ids
from rankwise.methods.groupwise import Groupwise
from rankwise.methods.listwise import Listwise, labels_for
from rankwise.methods.pointwise import Pointwise
from rankwise.methods.setwise import Setwise
from rankwise.train.groups import Group
from rankwise.train.rewards import target_order
from rankwise.types import Candidate, Query


@dataclass(frozen=True)
class TargetRow:
    """One group as token ids: its prompts, and the answer tokens trained after each prompt."""

    input_ids: tuple[tuple[int, ...], ...]
    answers: tuple[tuple[int, ...], ...]
    ranking: tuple[int, ...] = ()
    """``listwise.first``: the identifier tokens, most relevant first (FIRST's ranking loss)."""
    soft: tuple[float, ...] = ()
    """Distillation (pointwise): the teacher's score of each prompt's passage."""


def target_method(target: str, backend, options: dict):
    """The registered method ``target`` over ``backend`` (InputError for a method SFT cannot train)."""
    from rankwise.methods.registry import build_method, check_options

    check_options(target, options)
    method = build_method(target, backend, **options)
    if isinstance(method, Pointwise) and method.mode in ("yes_no", "graded"):
        return method
    if isinstance(method, Listwise) and not method.reasoning_tokens:
        return method
    if isinstance(method, Setwise) and method.mode == "scoring":
        return method
    if isinstance(method, Groupwise) and method.mode == "generate":
        return method
    raise InputError(f"sft.target {target!r}: SFT trains pointwise.yes_no / graded, listwise (window, full, "
                     "first; no reasoning: there are no reasoning chains to imitate), setwise in scoring mode "
                     "and groupwise.generate")


def choice_index(mode: str, label: float, threshold: float, top_label: float, n_choices: int) -> int:
    """The choice a graded label trains: yes_no: 0 (Yes) when ``label >= threshold`` else 1 (No);
    graded: the label scaled from 0..``top_label`` onto 0..``n_choices - 1`` (DL's 0..3 stays 0..3;
    SciFact's relevant 1 becomes the top grade)."""
    if mode == "yes_no":
        return 0 if label >= threshold else 1
    return min(n_choices - 1, round(max(label, 0.0) / (top_label or 1.0) * (n_choices - 1)))


def _shown(group: Group, n: int, seed: int) -> list[int]:
    """The group's passages in the seeded order a window or set shows them."""
    order = list(range(len(group.texts)))
    random.Random(seed * 100_003 + n).shuffle(order)
    return order


def _pointwise_rows(method: Pointwise, groups: Sequence[Group], threshold: float,
                    teacher: Sequence[tuple[float, ...]] | None) -> list[TargetRow]:
    tokenize = method.backend._tokenize  # the engine's own tokenization of a prompt (no special tokens added)
    answers = [ids[0] for ids in choice_token_ids(tokenize, method.template.choices)]
    top = max((max(g.labels) for g in groups), default=1.0)
    rows = []
    for n, g in enumerate(groups):
        prompts = method.prompts(Query(g.qid, g.query), [Candidate(d, t) for d, t in zip(g.docids, g.texts)])
        rows.append(TargetRow(tuple(tuple(tokenize(p)) for p in prompts),
                              tuple((answers[choice_index(method.mode, label, threshold, top, len(answers))],)
                                    for label in g.labels), soft=tuple(teacher[n]) if teacher else ()))
    return rows


def _listwise_rows(method: Listwise, groups: Sequence[Group], seed: int,
                   teacher: Sequence[tuple[float, ...]] | None) -> list[TargetRow]:
    backend = method.backend
    tokenize, eos = backend._tokenize, backend.tokenizer.eos_token_id
    rows = []
    for n, g in enumerate(groups):
        shown = _shown(g, n, seed)
        labels = labels_for(len(shown), method.labels)
        grades = teacher[n] if teacher else g.labels
        order = target_order([grades[i] for i in shown])  # ties: the order shown
        prompt = method.prompt(g.query, [backend.truncate(g.texts[i], method.max_passage_tokens) for i in shown],
                               [0.0] * len(shown))
        answer = " > ".join(f"[{labels[j]}]" for j in order)
        if not answer.startswith(method.answer_prefix):  # pragma: no cover - prefixes are "" or "["
            raise InputError(f"{method.name}: the answer does not start with the prefix {method.answer_prefix!r}")
        ranking = ()
        if method.mode == "first":
            ids = [v[0] for v in choice_token_ids(tokenize, method.choices[:len(shown)])]
            ranking = tuple(ids[j] for j in order)
        rows.append(TargetRow((tuple(tokenize(prompt)),),
                              (tuple(tokenize(answer[len(method.answer_prefix):])) + (eos,),), ranking))
    return rows


def _setwise_rows(method: Setwise, groups: Sequence[Group], seed: int,
                  teacher: Sequence[tuple[float, ...]] | None) -> list[TargetRow]:
    from rankwise.methods.setwise import LABELS

    backend = method.backend
    rows = []
    for n, g in enumerate(groups):
        shown = _shown(g, n, seed)
        if len(shown) > len(LABELS):
            raise InputError(f"data.group_size {len(shown)}: a setwise prompt labels at most {len(LABELS)} passages")
        grades = teacher[n] if teacher else g.labels
        best = target_order([grades[i] for i in shown])[0]
        prompt = method.prompt(g.query, [backend.truncate(g.texts[i], method.max_passage_tokens) for i in shown])
        rows.append(TargetRow((tuple(backend._tokenize(prompt)),), ((label_token(backend, LABELS[best]),),)))
    return rows


def group_answer(method: Groupwise, scores: Sequence[int]) -> str:
    """The answer a groupwise prompt asks for, given one score per passage in the order shown: a JSON list
    ("[0, 3, 1]") for a list prompt (answer_regex with one group), else one line per passage in the method's
    ``score_prefix`` form ("Document [1] score: 0")."""
    if method.lists_scores:
        return "[" + ", ".join(str(s) for s in scores) + "]"
    return "\n".join(method.score_prefix.format(label=i + 1) + str(s) for i, s in enumerate(scores))


def teacher_scale_scores(groups: Sequence[Group], teacher: Sequence[tuple[float, ...]],
                         top_score: int) -> list[list[int]]:
    """The teacher's scores on a groupwise answer scale 0..``top_score``: min-max over all the training
    candidates of the query (every group of a query shares one scale, as groupwise reranking compares scores
    across a query's groups), rounded; a query whose candidates the teacher scored alike gets 0 everywhere."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for g, scores in zip(groups, teacher):
        low[g.qid] = min(low.get(g.qid, math.inf), *scores)
        high[g.qid] = max(high.get(g.qid, -math.inf), *scores)
    return [[round((s - low[g.qid]) / (high[g.qid] - low[g.qid]) * top_score) if high[g.qid] > low[g.qid] else 0
             for s in scores] for g, scores in zip(groups, teacher)]


def _groupwise_rows(method: Groupwise, groups: Sequence[Group], seed: int,
                    teacher: Sequence[tuple[float, ...]] | None) -> list[TargetRow]:
    backend = method.backend
    tokenize, eos = backend._tokenize, backend.tokenizer.eos_token_id
    top = max((max(g.labels) for g in groups), default=1.0)
    scaled = teacher_scale_scores(groups, teacher, method.top_score) if teacher else None
    rows = []
    for n, g in enumerate(groups):
        shown = _shown(g, n, seed)
        scores = ([scaled[n][i] for i in shown] if scaled else
                  [choice_index("graded", g.labels[i], 0.0, top, method.top_score + 1) for i in shown])
        answer = group_answer(method, scores)
        if not answer.startswith(method.answer_prefix):
            raise InputError(f"{method.name}: the answer {answer[:30]!r}... does not start with the answer prefix "
                             f"{method.answer_prefix!r}")
        prompt = method.prompt(g.query, [g.texts[i] for i in shown])
        rows.append(TargetRow((tuple(tokenize(prompt)),),
                              (tuple(tokenize(answer[len(method.answer_prefix):])) + (eos,),)))
    return rows


def label_token(backend, label: str) -> int:
    """The token a setwise answer names ``label`` with after "Passage": " A" where that is one token (as in
    Qwen's and Llama's vocabularies), else "A" (both are variants the method reads)."""
    spaced = backend._tokenize(" " + label)
    return spaced[0] if len(spaced) == 1 else backend._tokenize(label)[0]


def target_rows(method, groups: Sequence[Group], threshold: float, seed: int = 0,
                teacher: Sequence[tuple[float, ...]] | None = None) -> list[TargetRow]:
    """Every group as prompts (rendered by ``method``) and answers (from the graded labels, or the order of
    the ``teacher``'s scores, one tuple per group); pointwise rows carry the teacher's scores as soft labels."""
    if isinstance(method, Pointwise):
        return _pointwise_rows(method, groups, threshold, teacher)
    if isinstance(method, Listwise):
        return _listwise_rows(method, groups, seed, teacher)
    if isinstance(method, Groupwise):
        return _groupwise_rows(method, groups, seed, teacher)
    return _setwise_rows(method, groups, seed, teacher)


def yes_no_ids(method) -> tuple[list[int], list[int]]:
    """Token ids of every variant of Yes and of No (what ``pointwise.yes_no`` sums at inference)."""
    yes, no = choice_token_ids(method.backend._tokenize, method.template.choices)[:2]
    return yes, no
