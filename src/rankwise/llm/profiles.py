"""Model profiles: what a known reranker family was trained with, as data (``prompts/profiles/*.yaml``).

A profile binds a model family, matched by name pattern (hub id, registry name, directory name) and/or by
its config.json (``architectures``, ``model_type``), to its canonical prompt (a prompt file of
``rankwise.prompts``, which also holds the answer tokens), how its score is read, the methods that take
that prompt (the first is the default), options those methods need, the engine, and optionally a ``chat``
frame: the exact text around the prompt (``{system}``, ``{user}``) that replaces the model's chat template.

``profile_for(name)`` finds the profile of a model; methods call ``profile_options`` so that a matching
profile supplies the prompt (and options) unless the user passes them; ``load_backend`` wraps a backend
whose profile has a chat frame in ``FramedBackend``.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rankwise.data._io import read_yaml
from rankwise.errors import InputError
from rankwise.llm.protocol import mark_plain, neutralize_control_tokens
from rankwise.prompts import PROMPT_DIR, PromptTemplate, load_prompt

PROFILE_DIR = PROMPT_DIR / "profiles"
_FIELDS = {"name", "family", "source", "match", "prompt", "methods", "options", "readout", "engine", "chat",
           "caveat"}
_MATCH_FIELDS = {"names", "architectures", "model_types"}


@dataclass(frozen=True)
class Profile:
    name: str
    family: str
    source: str                      # where the prompt format comes from (repository, file, paper)
    prompt: str                      # a bundled prompt name or a prompt file
    methods: tuple[str, ...]         # methods that take this prompt; the first is the default
    readout: str                     # how the model's score is read
    names: tuple[str, ...] = ()      # glob patterns, case-insensitive
    architectures: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)  # method options the family needs
    engine: str | None = None        # the engine to use under engine="auto"; None: measure as usual
    chat: str | None = None          # the frame around the prompt, replacing the model's chat template
    caveat: str | None = None        # where rankwise's read-out differs from the reference

    @property
    def method(self) -> str:
        """The default method."""
        return self.methods[0]

    def template(self) -> PromptTemplate:
        return load_prompt(self.prompt)

    def frame(self, user: str, system: str | None = None) -> str:
        """The profile's chat frame around one user turn (and its system text)."""
        if self.chat is None:
            raise ValueError(f"profile {self.name!r} has no chat frame")
        if system and "{system}" not in self.chat:
            raise InputError(f"profile {self.name!r}: its chat frame has no {{system}}, but the prompt has a "
                             "system text")
        return self.chat.replace("{system}", system or "").replace("{user}", user)

    def matches(self, names: list[str], config: dict | None) -> bool:
        """Name patterns (if any) match one of ``names``, and the config (where known) fits the
        architectures/model types the profile lists; a profile without patterns matches on config alone."""
        if self.names and not any(fnmatch.fnmatch(n.lower(), p.lower()) for n in names for p in self.names):
            return False
        if config is None:
            return bool(self.names)
        if self.architectures and not set(config.get("architectures") or ()) & set(self.architectures):
            return False
        return not self.model_types or config.get("model_type") in self.model_types


def load_profile(path: str | Path) -> Profile:
    """One profile file; a missing or unknown field is an InputError naming it."""
    path = Path(path)
    data = read_yaml(path, "profile file")
    if not isinstance(data, dict):
        raise InputError("a profile file must be a mapping", path)
    unknown = set(data) - _FIELDS
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}", path)
    missing = [f for f in ("name", "family", "source", "match", "prompt", "methods", "readout") if f not in data]
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}", path)
    match = data["match"] or {}
    if set(match) - _MATCH_FIELDS or not match:
        raise InputError(f"match takes {', '.join(sorted(_MATCH_FIELDS))} (got {', '.join(match) or 'nothing'})",
                         path)
    if not data["methods"]:
        raise InputError("methods must name at least one method", path)
    chat = data.get("chat")
    if chat is not None and "{user}" not in chat:
        raise InputError("chat must contain {user}", path)
    return Profile(name=data["name"], family=data["family"], source=data["source"], prompt=data["prompt"],
                   methods=tuple(data["methods"]), readout=data["readout"], names=tuple(match.get("names", ())),
                   architectures=tuple(match.get("architectures", ())),
                   model_types=tuple(match.get("model_types", ())), options=dict(data.get("options") or {}),
                   engine=data.get("engine"), chat=chat, caveat=data.get("caveat"))


@lru_cache(maxsize=1)
def profiles() -> tuple[Profile, ...]:
    """Every bundled profile, by file name."""
    return tuple(load_profile(p) for p in sorted(PROFILE_DIR.glob("*.yaml")))


def _names_and_config(model: str) -> tuple[list[str], dict | None]:
    """The names a model goes by (as given, the hub id of a registry name, a directory's name) and its
    config.json where it is on disk (a local directory, or a hub model in the local hub cache)."""
    from rankwise.llm.models import get_spec, hub_snapshot

    names = [model]
    spec = get_spec(model)
    hub_id = spec.hub_id if spec is not None else (model if model.count("/") == 1 else None)
    if spec is not None and spec.hub_id:
        names.append(spec.hub_id)
    path = Path(model).expanduser()
    folder = path if path.is_dir() else None
    if folder is not None:
        names.append(folder.name)
    elif hub_id:
        try:
            folder = hub_snapshot(hub_id)
        except Exception:  # noqa: BLE001 - an unreadable hub cache only means "config unknown"
            folder = None
    config = None
    if folder is not None and (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            config = None
    return names, config


@lru_cache(maxsize=256)
def profile_for(model_name_or_dir: str) -> Profile | None:
    """The profile of a model (registry name, hub id or local directory), or None if no family matches."""
    names, config = _names_and_config(str(model_name_or_dir))
    return next((p for p in profiles() if p.matches(names, config)), None)


def profile_options(backend, method: str, options: dict) -> dict:
    """``options`` with the prompt and options of the backend's model profile filled in, if the profile
    serves ``method``; what the user passed wins."""
    name = getattr(backend, "name", None)
    profile = profile_for(name) if isinstance(name, str) and name else None
    if profile is None or method not in profile.methods:
        return options
    return {"prompt": profile.prompt, **profile.options, **options}


class FramedBackend:
    """A backend whose ``format_chat`` renders its profile's chat frame instead of the model's template.

    Everything else is the wrapped backend's (attributes, primitives, usage)."""

    def __init__(self, backend, profile: Profile):
        if profile.chat is None:
            raise ValueError(f"profile {profile.name!r} has no chat frame")
        self.backend = backend
        self.profile = profile

    def __getattr__(self, item):
        return getattr(self.backend, item)

    def format_chat(self, user: str, system: str | None = None) -> str:
        """The frame around the turn; control-token strings in the turn's text are marked as plain text (or,
        on an engine that does not tokenize itself, neutralized)."""
        specials = getattr(self.backend, "control_tokens", None)

        def safe(text: str) -> str:
            return neutralize_control_tokens(text) if specials is None else mark_plain(text, specials)

        return self.profile.frame(safe(user), safe(system) if system else system)


def apply_profile(backend):
    """The backend, framed by its profile's chat frame when its model has a profile with one."""
    profile = profile_for(str(backend.name))
    return FramedBackend(backend, profile) if profile is not None and profile.chat else backend
