"""Stages on one model share one backend (a tiny random model)."""


from __future__ import annotations

from rankwise.pipeline import Backends, Rerank
from rankwise.types import Candidate, Query, Request


def test_stages_on_one_model_share_one_backend(tmp_path):
    from tests.tiny_lm import save_tiny_model

    save_tiny_model(tmp_path)
    on_tiny = {"model": str(tmp_path), "engine": "transformers", "dtype": "float32"}
    pipeline = Rerank("pointwise.yes_no", **on_tiny) % 4 >> Rerank("pointwise.graded", **on_tiny) % 2
    cands = tuple(Candidate(f"d{i}", f"the capital of France is Paris {i}") for i in range(6))
    backends = Backends(cache=False)
    result = pipeline.run([Request(Query("q", "capital of France"), cands)], backends=backends)
    assert len(backends) == 1
    assert [s.usage.calls for s in result.stages] == [4, 2]
    assert result.stages[0].load_seconds > 0 and result.stages[1].load_seconds < result.stages[0].load_seconds
    assert sorted(result.rankings["q"].docids) == sorted(c.docid for c in cands)
