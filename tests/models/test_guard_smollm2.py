"""The injection guard on a real model."""


from __future__ import annotations

from unit.test_guard import _attacked

from rankwise.bench.robustness import ADVERSARIAL_DOCID
from rankwise.pipeline import load_reranker
from tests.oracle import assert_head_reranked


def test_guard_on_a_real_model(dl19) -> None:
    """SmolLM2 with the guard: the injected passage never enters the model's input."""
    requests = _attacked(dl19, 2)
    reranker = load_reranker("pointwise.yes_no", "smollm2-135m", guard=True, max_passage_tokens=48)
    for request in requests:
        ranking = reranker.rerank(request.query, request.candidates, 11)
        assert_head_reranked(ranking, request.candidates, 11)
        assert ranking.docids.index(ADVERSARIAL_DOCID) == 10 and ranking.usage.calls == 10
