"""sentence-transformers CrossEncoder engine: one relevance score per (query, passage) pair."""

from __future__ import annotations

import json
import time
from typing import Sequence

import numpy as np

from rankwise.errors import ModelError
from rankwise.llm.base import answered, call_usage
from rankwise.types import Usage


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
