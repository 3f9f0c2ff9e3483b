"""Prompt templates are data: a YAML file per prompt, swappable without touching an algorithm.

A template has a ``user`` text with ``{placeholders}``, an optional ``system`` text, and either
``choices`` (scored from next-token log-probabilities) or an ``answer_regex`` (validates and extracts a
generated answer), as rank_llm keeps its templates. Prompts that list many candidates may give an ``item``
text: the line of one candidate (e.g. ``[{label}] {passage}``), joined into the ``user`` text by the method.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path


from rankwise.data._io import read_yaml
from rankwise.errors import InputError

PROMPT_DIR = Path(__file__).parent


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    user: str
    system: str | None = None
    choices: tuple[str, ...] = ()
    answer_regex: str | None = None
    description: str = ""
    fields: tuple[str, ...] = field(default=())
    item: str | None = None

    def render_item(self, **values: str) -> str:
        """One candidate's line (the ``item`` text with its placeholders filled)."""
        if self.item is None:
            raise ValueError(f"prompt {self.name!r} has no item")
        return self.item.format(**values)

    def render(self, **values: str) -> str:
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise InputError(f"prompt {self.name!r} needs {', '.join(missing)}")
        return self.user.format(**values)

    def parse(self, text: str) -> re.Match | None:
        """Match a generated answer against answer_regex (None if it does not validate)."""
        if self.answer_regex is None:
            raise ValueError(f"prompt {self.name!r} has no answer_regex")
        return re.search(self.answer_regex, text, flags=re.S)


def load_prompt(name_or_path: str) -> PromptTemplate:
    """A bundled prompt by name (``pointwise.yes_no``) or a user's YAML file by path."""
    bundled = PROMPT_DIR / f"{name_or_path}.yaml"
    path = bundled if bundled.is_file() else Path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPT_DIR.glob("*.yaml")))
        raise InputError(f"no such prompt file or bundled prompt (bundled: {known})", path)
    data = read_yaml(path, "prompt file")
    if not isinstance(data, dict) or "user" not in data:
        raise InputError("a prompt file needs a 'user' field", path)
    unknown = set(data) - {"name", "user", "system", "choices", "answer_regex", "description", "item"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}", path)
    placeholders = tuple(sorted({f for _, f, _, _ in string.Formatter().parse(data["user"]) if f}))
    return PromptTemplate(name=data.get("name", path.stem), user=data["user"], system=data.get("system"),
                          choices=tuple(data.get("choices") or ()), answer_regex=data.get("answer_regex"),
                          description=data.get("description", ""), fields=placeholders,
                          item=data.get("item"))
