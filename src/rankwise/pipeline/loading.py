"""The one path from (method, model, options) to a reranker. The CLI, pipeline files, the bench, the service,
training and Ray workers all load through here, so a method runs the same wherever it is called from."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankwise.methods.method import Method
from rankwise.methods.registry import build_method, check_options, method_info

if TYPE_CHECKING:
    from rankwise.pipeline.stages import Rerank


def load_reranker(method: str, model: str, *, engine: str = "auto", dtype: str = "auto",
                  cache: bool | str | Path = True, backend_options: dict | None = None,
                  backend: Any = None, **options: Any) -> Method:
    """``method`` (a registered name) over ``model`` (a catalogue name, a local file or directory, a hub id),
    e.g. ``load_reranker("pointwise.yes_no", "qwen2.5-0.5b", max_passage_tokens=128)``.

    ``engine``/``dtype``: "auto" picks what is fastest on this machine. ``cache``: True (the default SQLite
    file), a path, or False. ``backend_options`` go to the engine (batch_size, base_url...); keyword options
    to the method (``rankwise methods show NAME`` lists them). ``backend``: an already loaded backend of the
    kind the method needs (then ``model``, ``engine``, ``dtype`` and ``cache`` only label it).
    The reranker remembers how it was made (``spec``), so it prints and saves as a pipeline stage.
    """
    info = method_info(method)
    check_options(method, options)  # a wrong option fails before a model loads
    if backend is None:
        from rankwise.llm import load_backend_for

        backend = load_backend_for(info.needs, model, engine=engine, dtype=dtype, cache=cache,
                                   **dict(backend_options or {}))
    reranker = build_method(method, backend, **options)
    reranker.spec = {"method": method, "model": model, "options": dict(options)}
    return reranker


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class Backends:
    """Loads each backend once and shares it: stages whose methods need the same kind of backend (an LLM, an
    embedding model) on the same model, engine, dtype and options run on one backend.

    ``cache``: the output cache of every backend (True: the default SQLite file, a path, or False).
    Keep one ``Backends`` across runs to load models once for several pipelines.
    """

    def __init__(self, cache: bool | str | Path = True):
        self.cache = cache
        self._backends: dict[str, Any] = {}
        self._rerankers: dict[str, Method] = {}

    def __len__(self) -> int:
        """How many backends are loaded."""
        return len(self._backends)

    def reranker(self, stage: "Rerank") -> tuple[Method, float]:
        """The stage's method on its (shared) backend, and the seconds spent loading it now (0 if loaded)."""
        started = time.perf_counter()
        needs = method_info(stage.method).needs
        backend_key = _key(needs, stage.model, stage.engine, stage.dtype, stage.backend_options)
        key = _key(stage.method, backend_key, stage.options)
        if key not in self._rerankers:
            from rankwise.llm import load_backend_for

            if backend_key not in self._backends:
                self._backends[backend_key] = load_backend_for(
                    needs, stage.model, engine=stage.engine, dtype=stage.dtype, cache=self.cache,
                    **stage.backend_options)
            self._rerankers[key] = load_reranker(stage.method, stage.model, backend=self._backends[backend_key],
                                                 **stage.options)
        return self._rerankers[key], time.perf_counter() - started
