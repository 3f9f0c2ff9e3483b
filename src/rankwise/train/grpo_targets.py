"""What GRPO trains: a registered method's own prompts and its own answer parser.

A target wraps a method built over the policy being trained (``rankwise.train.grpo.training_method``):
``rows`` renders training prompts with the method's ``prompt``/``prompts`` (passages shuffled with their
labels, seeded), and ``read`` parses a completion the way the method reads its answer when it reranks,
into an ``Answer``: one score per passage shown (on the labels' 0..3 scale) and a format grade. Families:

- pointwise (``pointwise.graded``, ``pointwise.yes_no``): one prompt per passage; the answer is one choice
  (a digit 0-3; Yes = 3, No = 0). Rows are ordered list by list (``list_id``), so a step holds whole lists
  and the pooled (ERank-style) reward can compare the completions of a list's passages;
- groupwise (``groupwise.generate``): one score per passage, a JSON list (``groupwise.json``, 0-3) or one
  "Document [i] score: X" line each (``groupwise.score``, 0-10);
- setwise (``setwise.reasoning`` and the generating setwise modes): the label of the most relevant passage,
  with ``<think>``/``<answer>`` tags in reasoning mode (Rank-R1); the chosen passage scores 1, the others 0;
- listwise (``listwise.window``/``full`` in generate mode, optionally ``reasoning_tokens``: ReasonRank): a
  permutation; a passage scores ``n - position``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from rankwise.errors import InputError
from rankwise.methods.groupwise import Groupwise, answer_list
from rankwise.methods.listwise import ANSWER_CLOSE, ANSWER_OPEN, Listwise, answer_section, labels_for
from rankwise.methods.pointwise import Pointwise
from rankwise.methods.setwise import Setwise, parse_label
from rankwise.train.groups import Group
from rankwise.types import Candidate, Query

MAX_GRADE = 3.0
"""Labels are graded 0..3 (TREC DL); every target's scores are on this scale."""

OK, PARTIAL, BROKEN = "ok", "partial", "broken"
"""An answer as asked; one that parses but not as asked (wrong count, repaired, tags missing); none."""

SIZE_OPTION = {"groupwise": "group_size", "setwise": "set_size", "listwise": "window_size"}
"""The option of each family that sets how many passages one prompt shows (``grpo.group_size``)."""

_UNCLOSED = re.compile(r"\[\s*-?\d+(\.\d+)?(\s*,\s*-?\d+(\.\d+)?)*\s*,?\s*$")


@dataclass(frozen=True)
class Answer:
    """A completion as the method reads it."""

    status: str
    scores: tuple[float, ...] | None
    """One score per passage in prompt order (0..3 scale), or None when the answer gives no ranking."""
    format: float
    """The format reward: 1 for an answer exactly as asked, down to -1 for one that does not parse."""
    key: str
    """The answer normalised (counting distinct answers: one answer for every prompt is a collapse)."""


def completion_text(completion: Any, prefix: str | None = None) -> str:
    """The text of a completion, plain or conversational (a list of messages), after the answer's prefix."""
    if not isinstance(completion, str):
        completion = "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return (prefix or "") + completion


def family(method_name: str) -> str:
    """``pointwise.graded`` -> ``pointwise``."""
    return method_name.split(".", 1)[0]


class Target:
    """Rows and answers of one method; subclasses render prompts and read answers."""

    passages_per_prompt: int

    def __init__(self, method, passages_per_prompt: int):
        self.method = method
        self.passages_per_prompt = passages_per_prompt

    @property
    def answer_prefix(self) -> str:
        return getattr(self.method, "answer_prefix", "") or ""

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        return self.method.prompt(query, list(passages))

    def rows(self, groups: Sequence[Group], seed: int) -> list[dict]:
        """One row per prompt (``prompt``, ``labels`` in prompt order, ``answer_prefix``, ``list_id``),
        lists in a seeded order: the positive is not always shown first."""
        rows = []
        order = list(range(len(groups)))
        random.Random(seed).shuffle(order)
        for list_id, n in enumerate(order):
            g = groups[n]
            shown = list(range(len(g.texts)))
            random.Random(seed * 100_003 + n).shuffle(shown)
            for part in range(0, len(shown) - self.passages_per_prompt + 1, self.passages_per_prompt):
                chosen = shown[part:part + self.passages_per_prompt]
                rows.append({"prompt": self.prompt(g.query, [g.texts[i] for i in chosen]),
                             "labels": [min(g.labels[i], MAX_GRADE) for i in chosen],
                             "answer_prefix": self.answer_prefix, "list_id": list_id})
        return rows

    def release_backend(self) -> None:
        """Drop the engine once the rows are rendered: reading answers needs only the method's template
        (the engine keeps its own copy of the LM head, memory the training run needs)."""
        self.method.backend = None

    def read(self, text: str, n: int) -> Answer:  # pragma: no cover - abstract
        raise NotImplementedError


class PointwiseTarget(Target):
    """One prompt per passage; the answer is one of the template's choices."""

    def __init__(self, method: Pointwise):
        super().__init__(method, 1)
        if method.mode not in ("yes_no", "graded"):
            raise InputError(f"grpo.target {method.name!r}: only pointwise.yes_no and pointwise.graded answer "
                             "with a choice")
        variants = [c.split("|") for c in method.template.choices]
        if method.mode == "yes_no":
            values = [MAX_GRADE, 0.0]
        else:
            values = [float(v[0]) * MAX_GRADE / max(float(w[0]) for w in variants) for v in variants]
        self.choices = [(variant.strip(), value, str(i)) for i, (vs, value) in enumerate(zip(variants, values))
                        for variant in vs]

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        return self.method.prompts(Query("q", query), [Candidate("d", p) for p in passages])[0]

    def read(self, text: str, n: int) -> Answer:
        stripped = text.strip()
        for variant, value, key in sorted(self.choices, key=lambda c: -len(c[0])):
            if stripped == variant:
                return Answer(OK, (value,), 1.0, key)
            if stripped.startswith(variant):
                return Answer(PARTIAL, (value,), 0.5, key)
        return Answer(BROKEN, None, -1.0, "?")


FORMAT_VALUES = {"ok": 1.0, "trailing": 0.75, "range": 0.5, "unclosed": -0.75, "broken": -1.0}


class GroupwiseTarget(Target):
    """One score per passage, read with the method's answer regex and put on the labels' 0-3 scale: a JSON
    list (``groupwise.json``, 0-3) or "Document [i] score: X" lines (``groupwise.score``, 0-10). Format
    credit: 1 for exactly one in-range score per passage (a list of the right length; one line per passage
    in order) and nothing after, 0.75 with other text beside it, 0.5 for a list with scores outside 0-3,
    -0.5..0 for a list of the wrong length or passages left unscored (a line's score outside 0-10 scores
    nothing, as when reranking; closer scores higher), -0.75 for a list cut off before its ``]``, -1 for
    anything else."""

    def __init__(self, method: Groupwise, passages_per_prompt: int):
        super().__init__(method, passages_per_prompt)
        self.pattern = method.template.answer_regex
        self.top = float(method.top_score)

    def read(self, text: str, n: int) -> Answer:
        read = self._read_list if self.method.lists_scores else self._read_lines
        found = read(text, n)
        if isinstance(found, Answer):
            return found
        scores, rest = found
        key = _list_key(scores)
        scaled = tuple(min(max(s, 0.0), self.top) * MAX_GRADE / self.top for s in scores)
        if not all(0 <= s <= self.top for s in scores):
            return Answer(OK, scaled, FORMAT_VALUES["range"], key)
        return Answer(OK, scaled, FORMAT_VALUES["ok" if not rest.strip() else "trailing"], key)

    def _read_list(self, text: str, n: int) -> tuple[list[float], str] | Answer:
        """The list's scores and the text after it."""
        found = answer_list(text, self.pattern)
        if found is None:
            status = "unclosed" if _UNCLOSED.search(text.strip()) else "broken"
            return Answer(BROKEN, None, FORMAT_VALUES[status], "?")
        scores, end = found
        if len(scores) != n:
            return Answer(PARTIAL, None, -0.5 * min(1.0, abs(len(scores) - n) / n), _list_key(scores))
        return scores, text[end:]

    def _read_lines(self, text: str, n: int) -> tuple[list[float], str] | Answer:
        """The scores of passages 1..n, each from its first line, and the text beside the expected lines."""
        matches = list(re.finditer(self.pattern, text))
        if not matches:
            return Answer(BROKEN, None, FORMAT_VALUES["broken"], "?")
        first: dict[int, float] = {}
        for m in matches:  # as the method reads it: the first in-range score of a document counts
            if 0 <= float(m.group(2)) <= self.top:
                first.setdefault(int(m.group(1)) - 1, float(m.group(2)))
        missing = [i for i in range(n) if i not in first]
        if missing:
            return Answer(PARTIAL, None, -0.5 * len(missing) / n, _list_key([first.get(i) for i in range(n)]))
        in_order = [int(m.group(1)) for m in matches] == list(range(1, n + 1))
        rest = re.sub(self.pattern, "", text).replace("\n", "").strip()
        return [first[i] for i in range(n)], ("" if in_order else "out of order ") + rest


def _list_key(scores: Sequence[float | None]) -> str:
    """A groupwise answer normalised for counting distinct answers ("_" for a passage left unscored)."""
    return "[" + ", ".join("_" if s is None else f"{s:g}" for s in scores) + "]"


_REASONED = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


class SetwiseTarget(Target):
    """The label of the most relevant passage. Reasoning mode (Rank-R1): full format credit only for
    ``<think> ... </think> <answer>LABEL</answer>`` and nothing after; a label found otherwise: 0.5."""

    def __init__(self, method: Setwise, passages_per_prompt: int):
        if method.mode == "scoring":
            raise InputError(f"grpo.target {method.name!r}: the scoring mode generates nothing to reward; "
                             "use mode generation or reasoning (setwise.reasoning)")
        super().__init__(method, passages_per_prompt)

    def read(self, text: str, n: int) -> Answer:
        chosen = parse_label(self.method.template, text, n)
        if chosen is None:
            return Answer(BROKEN, None, -1.0, "?")
        scores = tuple(1.0 if i == chosen else 0.0 for i in range(n))
        reasoning = self.method.mode == "reasoning"
        exact = _REASONED.match(text) is not None if reasoning else True
        return Answer(OK if exact else PARTIAL, scores, 1.0 if exact else 0.5, str(chosen + 1))


class ListwiseTarget(Target):
    """A permutation, read with the method's own parser (only the <answer> section with reasoning).
    Format credit: 1 for every identifier once (and, with reasoning, the tags in order and nothing after),
    0.25 for a permutation that needed repair, -1 for no identifier at all."""

    def __init__(self, method: Listwise, passages_per_prompt: int):
        if method.mode != "generate":
            raise InputError(f"grpo.target {method.name!r}: only the generate mode writes a permutation")
        super().__init__(method, passages_per_prompt)

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        return self.method.prompt(query, list(passages), [0.0] * len(passages))

    def read(self, text: str, n: int) -> Answer:
        m = self.method
        shown = answer_section(text) if m.reasoning_tokens else text
        if not re.search(m.template.answer_regex, shown):
            return Answer(BROKEN, None, -1.0, "?")
        parsed = m.read_permutation(text, n)
        scores = [0.0] * n
        for position, i in enumerate(parsed.order):
            scores[i] = float(n - position)
        tags = _REASONED.match(text) is not None if m.reasoning_tokens else \
            not (ANSWER_OPEN in text or ANSWER_CLOSE in text)
        exact = not parsed.repaired and tags
        key = " > ".join(labels_for(n, m.labels)[i] for i in parsed.order)
        return Answer(OK if exact else PARTIAL, tuple(scores), 1.0 if exact else 0.25, key)


def target_for(method, passages_per_prompt: int) -> Target:
    """The target of a built method (InputError for a method GRPO cannot reward)."""
    if isinstance(method, Pointwise):
        return PointwiseTarget(method)
    if isinstance(method, Groupwise):
        if method.mode != "generate":
            raise InputError(f"grpo.target {method.name!r}: use groupwise.generate (it writes the scores)")
        return GroupwiseTarget(method, passages_per_prompt)
    if isinstance(method, Setwise):
        return SetwiseTarget(method, passages_per_prompt)
    if isinstance(method, Listwise):
        return ListwiseTarget(method, passages_per_prompt)
    raise InputError(f"grpo.target {getattr(method, 'name', method)!r}: GRPO trains pointwise.graded, "
                     "pointwise.yes_no, groupwise.generate, setwise (generation or reasoning) and listwise "
                     "(generate) methods")
