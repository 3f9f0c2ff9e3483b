"""The registry of method names, each with the backend it needs and its options declared as data;
building a method from a name checks the options first and names the valid ones."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rankwise.errors import InputError
from rankwise.llm.protocol import Backend
from rankwise.methods.method import Method


@dataclass(frozen=True)
class Option:
    """A method option, declared as data: shown by ``rankwise methods show``, checked before building."""

    name: str
    type: type | tuple[type, ...]
    default: Any
    help: str
    choices: tuple = ()

    def check(self, method: str, value: Any) -> None:
        """An InputError naming the method, the option and what it takes, when ``value`` does not fit."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        numeric = float in types and isinstance(value, int) and not isinstance(value, bool)
        if value is not None and not numeric and (not isinstance(value, types) or
                                                  (isinstance(value, bool) and bool not in types)):
            names = "/".join(t.__name__ for t in types)
            raise InputError(f"method {method}: option {self.name} takes a {names}, got {value!r}")
        if self.choices and value not in self.choices:
            raise InputError(f"method {method}: option {self.name} must be one of "
                             f"{', '.join(map(str, self.choices))}, got {value!r}")


GUARD = Option("guard", (bool, int, dict), False,
               "demote candidates that instruct the ranker: true, a number of signals, or {threshold: N}")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    factory: Callable[..., Method]
    needs: str  # the kind of backend: "llm", "embedding", "crossencoder", "attention"
    description: str
    options: tuple[Option, ...] = field(default=())

    def option(self, name: str) -> Option:
        for option in self.options + (GUARD,):
            if option.name == name:
                return option
        valid = ", ".join(o.name for o in self.options + (GUARD,))
        raise InputError(f"method {self.name} has no option {name!r} (its options: {valid})")


_REGISTRY: dict[str, MethodInfo] = {}


# Modules of this package that hold no method; every other module registers its methods on import.
_NOT_METHODS = {"method", "registry", "sorting", "permutation", "aggregation", "guard"}


def register(name: str, needs: str, description: str, options: Sequence[Option] = ()):
    """Register a method factory ``factory(backend, **options)`` under ``name`` with its declared options."""
    def wrap(factory):
        _REGISTRY[name] = MethodInfo(name, factory, needs, description, tuple(options))
        return factory

    return wrap


def _load_all() -> None:
    import rankwise.methods as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_METHODS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def method_infos() -> list[MethodInfo]:
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda m: m.name)


def method_names() -> list[str]:
    """Every registered method name (imports no model library)."""
    return [m.name for m in method_infos()]


def method_info(name: str) -> MethodInfo:
    """The registered method called ``name``; an unknown name is an InputError naming close ones."""
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(sorted(_REGISTRY))})"
        raise InputError(f"unknown method {name!r}{hint}")
    return _REGISTRY[name]


def check_options(name: str, options: dict) -> None:
    """Every option is one the method declares, of the declared type; else an InputError naming the valid ones."""
    info = method_info(name)
    for key, value in options.items():
        info.option(key).check(name, value)


def build_method(name: str, backend: Backend, **options) -> Method:
    """Construct a registered method over a backend, e.g. ``build_method("pointwise.yes_no", llm)``;
    an option the method does not declare is an InputError naming the valid ones. ``guard=True`` (any
    method) demotes candidates that instruct the ranker (``rankwise.methods.guard``)."""
    check_options(name, options)
    guard = options.pop("guard", False)
    return _guarded(method_info(name).factory(backend, **options), guard)


def _guarded(method: Method, guard: bool | int | dict) -> Method:
    """``guard``: false (off), true (the default threshold), a number of signals, or {threshold: N}."""
    if guard is False or guard is None:
        return method
    from rankwise.methods.guard import DEFAULT_THRESHOLD, GuardedReranker

    if guard is True:
        return GuardedReranker(method)
    if isinstance(guard, dict) and set(guard) <= {"threshold"}:
        return GuardedReranker(method, guard.get("threshold", DEFAULT_THRESHOLD))
    if isinstance(guard, int):
        return GuardedReranker(method, guard)
    raise InputError(f"option guard must be true, false, a number of signals or {{threshold: N}}, got {guard!r}")
