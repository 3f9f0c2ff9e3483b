"""sentence-transformers engines: bi-encoders for the ``embed`` primitive (dense retrieval, E2Rank) and
cross-encoders for one relevance score per (query, passage) pair."""

from __future__ import annotations

import json
import time
from typing import Sequence

import numpy as np

from rankwise.errors import ModelError
from rankwise.llm.cache import OutputCache, decode_vector, embedding_key, encode_vector
from rankwise.llm.protocol import answered, call_usage
from rankwise.types import Usage


class SentenceTransformerBackend:
    """Embeds texts with a sentence-transformers model: a registry name (``minilm-l6``), a local
    directory or .zip, or a hub id. Embeddings are L2-normalised float32."""

    engine = "sentence-transformers"
    dtype = "float32"

    def __init__(self, model: str = "minilm-l6", *, batch_size: int = 64, device: str | None = None,
                 show_progress: bool = False, memory: int = 100_000, cache: "OutputCache | None" = None):
        from sentence_transformers import SentenceTransformer

        from rankwise.llm.models import resolve_model

        resolved = resolve_model(model)
        if resolved.kind != "embedding" and resolved.hub_id is None:
            raise ModelError(f"{model}: a {resolved.kind} model, not an embedding model")
        source = str(resolved.source)
        try:
            self.model = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load embedding model {model!r} from {source}: "
                             f"{str(err).splitlines()[0]}") from None
        self._attach(resolved.name, batch_size, show_progress, memory, cache, resolved.cache_key)

    @classmethod
    def of(cls, model, name: str = "in-memory", batch_size: int = 64) -> "SentenceTransformerBackend":
        """A backend over an already loaded ``SentenceTransformer`` (training renders E2Rank's prompt with
        the model it trains)."""
        backend = cls.__new__(cls)
        backend.model = model
        backend._attach(name, batch_size, False, 100_000, None)
        return backend

    def _attach(self, name: str, batch_size: int, show_progress: bool, memory: int,
                cache: "OutputCache | None", cache_key: str | None = None) -> None:
        self.name = name
        self.cache_key = cache_key or name  # the model as the persistent cache knows it
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.memory = memory
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self.cache = cache
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def embed(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """[len(texts), d] normalised embeddings; ``kind`` picks the model's query or document prompt.

        Texts embedded before (same kind) come from an in-memory store of up to ``memory`` vectors, then
        from the persistent ``cache`` (keyed by model + kind + text) when there is one, so methods over the
        same candidates, and later runs, embed each passage once; those count as cache hits."""
        start, used = time.perf_counter(), call_usage(self)
        texts = list(texts)
        missing = self._recall(kind, list(dict.fromkeys(t for t in texts if (kind, t) not in self._memory)))
        if missing:
            encode = self.model.encode_query if kind == "query" else self.model.encode_document
            out = encode(missing, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=self.show_progress)
            vectors = np.asarray(out, dtype=np.float32)
            self._remember(kind, missing, vectors)
            if self.cache is not None:
                self.cache.put_many({embedding_key(self.cache_key, kind, t): encode_vector(v)
                                     for t, v in zip(missing, vectors)})
            used.forward_passes += -(-len(missing) // self.batch_size)
            tokens = sum(len(ids) for ids in self.model.tokenizer(missing, truncation=True,
                                                                  max_length=self.model.max_seq_length)["input_ids"])
            used.prompt_tokens += tokens
            used.computed_tokens += tokens
        used.calls += len(texts)
        used.cache_hits += len(texts) - len(missing)
        result = np.stack([self._memory[(kind, t)] for t in texts]) if texts else np.zeros((0, self.dimension))
        used.seconds += time.perf_counter() - start
        return answered(self, result.astype(np.float32), used)

    def _recall(self, kind: str, texts: list[str]) -> list[str]:
        """Load what the persistent cache holds of ``texts`` into memory; return the texts still missing."""
        if self.cache is None or not texts:
            return texts
        keys = {t: embedding_key(self.cache_key, kind, t) for t in texts}
        found = self.cache.get_many(list(keys.values()))
        hits = [t for t in texts if keys[t] in found]
        if hits:
            self._remember(kind, hits, np.stack([decode_vector(found[keys[t]]) for t in hits]))
        return [t for t in texts if keys[t] not in found]

    @property
    def max_tokens(self) -> int:
        """The longest input (tokens, special tokens excluded) the model reads; the rest is cut off."""
        return int(self.model.max_seq_length) - self.model.tokenizer.num_special_tokens_to_add(pair=False)

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a text longer than the model reads is the point, not an error to warn about
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` of at most ``max_tokens`` tokens (cut at a token boundary)."""
        offsets = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                       verbose=False)["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: offsets[max_tokens - 1][1]] if max_tokens > 0 else ""

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _remember(self, kind: str, texts: list[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors):
            self._memory[(kind, text)] = vector
        while len(self._memory) > self.memory:
            self._memory.pop(next(iter(self._memory)))  # oldest first


class CrossEncoderBackend:
    """A cross-encoder from a hub id (``cross-encoder/ms-marco-MiniLM-L6-v2``) or a local directory (or .zip)
    saved by sentence-transformers, e.g. one that ``rankwise`` training produced. ``max_length`` caps the
    tokens of a pair (default: the model's own)."""

    engine = "sentence-transformers"
    dtype = "float32"

    def __init__(self, model: str, *, batch_size: int = 32, max_length: int | None = None,
                 device: str | None = None):
        from sentence_transformers import CrossEncoder

        from rankwise.llm.models import resolve_model

        resolved = resolve_model(model)
        if not _is_cross_encoder(resolved):
            raise ModelError(f"{model}: a {resolved.kind} model, not a cross-encoder")
        source = str(resolved.source)
        try:
            self.model = CrossEncoder(source, device=device, max_length=max_length)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load cross-encoder {model!r} from {source}: "
                             f"{str(err).splitlines()[0]}") from None
        if self.model.num_labels != 1:
            raise ModelError(f"{model}: a cross-encoder with {self.model.num_labels} labels; "
                             "reranking needs one relevance score per pair (num_labels=1)")
        self.name = resolved.name
        self.batch_size = batch_size
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts)]: the model's relevance score of each (query, text) pair."""
        return self.score_pairs([(query, t) for t in texts])

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)]: the model's score of each (query, text) pair, batched."""
        start, used = time.perf_counter(), call_usage(self)
        if not pairs:
            return answered(self, np.zeros(0, dtype=np.float32), used)
        out = self.model.predict(list(pairs), batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=False)
        tokens = sum(len(ids) for ids in self.model.tokenizer(
            [q for q, _ in pairs], [t for _, t in pairs], truncation=True,
            max_length=self.model.max_seq_length)["input_ids"])
        used.calls += len(pairs)
        used.forward_passes += -(-len(pairs) // self.batch_size)
        used.prompt_tokens += tokens
        used.computed_tokens += tokens
        used.seconds += time.perf_counter() - start
        return answered(self, np.asarray(out, dtype=np.float32).reshape(len(pairs)), used)


def _is_cross_encoder(resolved) -> bool:
    """A hub id (the engine tells), a model resolved as a cross-encoder, or a directory that
    sentence-transformers saved as a CrossEncoder (its modules.json makes it look like a bi-encoder)."""
    if resolved.hub_id is not None or resolved.kind == "cross-encoder":
        return True
    config = resolved.hf_dir / "config_sentence_transformers.json" if resolved.hf_dir else None
    try:
        return config is not None and json.loads(config.read_text()).get("model_type") == "CrossEncoder"
    except (OSError, ValueError):
        return False
