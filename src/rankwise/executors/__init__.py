"""Where a rerank runs: in this process (``local``) or over a Ray cluster (``ray``, an optional extra).

Both take a :class:`RerankJob` (what to load: method, model, options, cache) and the requests, and return
the same :class:`rankwise.pipeline.RerankResult`, so the run file and the usage report do not depend on
where the work ran. Nothing here imports Ray; ``rankwise.executors.ray`` does, when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RerankJob:
    """A method on a model, how to load them, and the cache it reads and fills.

    ``backend_options`` go to the engine (engine, dtype, batch_size, base_url, ...), ``method_options`` to
    the method (prompt, max_passage_tokens, ...). ``cache``: a SQLite file, True (the default file) or
    False (compute everything, store nothing).
    """

    method: str
    model: str
    top_k: int | None = None
    backend_options: dict = field(default_factory=dict)
    method_options: dict = field(default_factory=dict)
    cache: Path | bool = True

    def cache_path(self) -> Path | None:
        """The user's cache file, or None when caching is off."""
        if self.cache is False:
            return None
        if self.cache is True:
            from rankwise.llm.cache import default_cache_path

            return default_cache_path()
        return Path(self.cache)


__all__ = ["EXECUTORS", "RerankJob"]
