"""sentence-transformers engine for the ``embed`` primitive (bi-encoders: dense retrieval, E2Rank)."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from rankwise.errors import ModelError
from rankwise.types import Usage


class SentenceTransformerBackend:
    """Embeds texts with a sentence-transformers model: a registry name (``minilm-l6``), a local
    directory or .zip, or a hub id. Embeddings are L2-normalised float32."""

    engine = "sentence-transformers"
    dtype = "float32"

    def __init__(self, model: str = "minilm-l6", *, batch_size: int = 64, device: str | None = None,
                 show_progress: bool = False):
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
        self.name = resolved.name
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def embed(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """[len(texts), d] normalised embeddings; ``kind`` picks the model's query or document prompt."""
        start = time.perf_counter()
        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        out = encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=self.show_progress)
        self.usage.calls += len(texts)
        self.usage.forward_passes += -(-len(texts) // self.batch_size)
        tokens = sum(len(ids) for ids in self.model.tokenizer(list(texts), truncation=True,
                                                              max_length=self.model.max_seq_length)["input_ids"])
        self.usage.prompt_tokens += tokens
        self.usage.computed_tokens += tokens
        self.usage.seconds += time.perf_counter() - start
        return np.asarray(out, dtype=np.float32)
