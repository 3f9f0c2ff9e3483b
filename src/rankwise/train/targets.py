"""Training rows for causal-LM rerankers, rendered by the method's own prompt code.

A pointwise method (``pointwise.yes_no``, ``pointwise.graded``) is built over a TransformersBackend that wraps
the model being trained, and its ``prompts()`` renders every (query, passage) of a group: the text, the
passage truncation and the chat template are the ones inference uses, so the trained answer token is read
from exactly the prompt ``rankwise rerank --method <target> --model DIR`` shows the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rankwise.errors import InputError
from rankwise.llm.protocol import choice_token_ids
from rankwise.train.groups import Group
from rankwise.types import Candidate, Query


@dataclass(frozen=True)
class TargetRow:
    """One group as token ids: a prompt per passage (the positive first) and the answer token to train."""

    input_ids: tuple[tuple[int, ...], ...]
    targets: tuple[int, ...]
    """The answer token per prompt: the first variant of the choice its label maps to."""


def target_method(target: str, backend, options: dict):
    """The registered pointwise method ``target`` over ``backend`` (InputError for other methods)."""
    from rankwise.methods.pointwise import Pointwise
    from rankwise.methods.registry import build_method, check_options

    check_options(target, options)
    method = build_method(target, backend, **options)
    if not isinstance(method, Pointwise) or method.mode not in ("yes_no", "graded"):
        raise InputError(f"sft.target {target!r}: only pointwise.yes_no and pointwise.graded can be trained")
    return method


def choice_index(mode: str, label: float, threshold: float, top_label: float, n_choices: int) -> int:
    """The choice a graded label trains: yes_no: 0 (Yes) when ``label >= threshold`` else 1 (No);
    graded: the label scaled from 0..``top_label`` onto 0..``n_choices - 1`` (DL's 0..3 stays 0..3;
    SciFact's relevant 1 becomes the top grade)."""
    if mode == "yes_no":
        return 0 if label >= threshold else 1
    return min(n_choices - 1, round(max(label, 0.0) / (top_label or 1.0) * (n_choices - 1)))


def target_rows(method, groups: Sequence[Group], threshold: float) -> list[TargetRow]:
    """Every group as prompts (rendered by ``method``) and answer tokens (from the graded labels)."""
    backend = method.backend
    tokenize = backend._tokenize  # the engine's own tokenization of a prompt (no special tokens added)
    answers = [ids[0] for ids in choice_token_ids(tokenize, method.template.choices)]
    top = max((max(g.labels) for g in groups), default=1.0)
    rows = []
    for g in groups:
        prompts = method.prompts(Query(g.qid, g.query),
                                 [Candidate(d, t) for d, t in zip(g.docids, g.texts)])
        rows.append(TargetRow(tuple(tuple(tokenize(p)) for p in prompts),
                              tuple(answers[choice_index(method.mode, label, threshold, top, len(answers))]
                                    for label in g.labels)))
    return rows


def yes_no_ids(method) -> tuple[list[int], list[int]]:
    """Token ids of every variant of Yes and of No (what ``pointwise.yes_no`` sums at inference)."""
    yes, no = choice_token_ids(method.backend._tokenize, method.template.choices)[:2]
    return yes, no
