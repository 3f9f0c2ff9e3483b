"""The serving shapes beside Cohere/Jina on one real uvicorn server over a tiny random transformer: TEI's
/rerank (plain httpx), vLLM's /score and /v1/score (httpx), Cohere v2 with max_tokens_per_doc (the cohere SDK),
and error bodies carrying param and code."""

from __future__ import annotations

import math

import httpx
import pytest

from rankwise.serve import RERANK_PATHS, create_app
from tests.serve_cases import GOOD
from tests.serve_server import ThreadServer
from tests.tiny_lm import tiny_backend

QUERY = "what is the capital of France?"
DOCS = ["Paris is the capital of France. " * 30, "Bread rises.",
        "Lyon is a large city in France, known for food. " * 20]


@pytest.fixture(scope="module")
def engine():
    return tiny_backend(dtype="float32")


@pytest.fixture(scope="module")
def server(engine):
    with ThreadServer(create_app(engine, "pointwise.yes_no")) as s:
        yield s


def _cohere(server, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/rerank", json={"query": QUERY, "documents": DOCS, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_tei_request_gets_a_bare_list_in_tei_shape(server):
    reference = _cohere(server, return_documents=True)
    response = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": False,
                                                        "return_text": True, "truncate": True}, timeout=60)
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list) and [set(r) for r in ranks] == [{"index", "score", "text"}] * len(DOCS)
    assert [(r["index"], r["score"]) for r in ranks] == [(r["index"], r["relevance_score"])
                                                        for r in reference["results"]]
    assert [r["text"] for r in ranks] == [DOCS[r["index"]] for r in ranks]
    plain = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60).json()
    assert all(set(r) == {"index", "score"} for r in plain)


def test_tei_raw_scores_gives_the_log_odds_of_a_probability_method(server):
    """TEI's raw_scores=true returns the logit before the sigmoid; pointwise.yes_no's P(yes) becomes
    log(p / (1 - p)), in the same order (a threshold at 0 then means p = 0.5)."""
    plain = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60).json()
    raw = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True},
                     timeout=60).json()
    assert [r["index"] for r in raw] == [r["index"] for r in plain]
    assert all(0 < r["score"] < 1 for r in plain)
    assert [r["score"] for r in raw] == pytest.approx([math.log(r["score"] / (1 - r["score"])) for r in plain],
                                                      rel=1e-5, abs=1e-6)


def test_log_odds_only_of_probabilities():
    from rankwise.serve.shapes import log_odds

    assert log_odds([0.5, 0.0, 1.0]) == pytest.approx([0.0, math.log(1e-12), -math.log(1e-12)], rel=1e-6)
    assert log_odds([0.9, -1.1]) is None  # guard's demoted candidates: not probabilities, left as they are


def test_the_cohere_shape_still_answers_on_rerank(server):
    response = httpx.post(f"{server.url}/rerank", json=GOOD, timeout=60)
    assert response.status_code == 200 and sorted(r["index"] for r in response.json()["results"]) == [0, 1]


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_vllm_score_answers_in_its_own_shape_in_input_order(server, path):
    reference = {r["index"]: r["relevance_score"] for r in _cohere(server)["results"]}
    response = httpx.post(f"{server.url}{path}", json={"model": "x", "text_1": QUERY, "text_2": DOCS}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["id"].startswith("score-") and isinstance(body["created"], int)
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"score"}
    assert [d["score"] for d in body["data"]] == pytest.approx([reference[i] for i in range(3)], abs=1e-6)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    pairs = httpx.post(f"{server.url}{path}", json={"text_1": [QUERY, "bread", QUERY], "text_2": DOCS},
                       timeout=60).json()
    assert [d["index"] for d in pairs["data"]] == [0, 1, 2]
    assert pairs["data"][0]["score"] == pytest.approx(reference[0], abs=1e-6)  # the same pair, the same score


def test_max_tokens_per_doc_cuts_the_documents_and_the_prompt_tokens(server, engine):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(base_url=server.url, api_key="unused", timeout=60)
    full = client.rerank(model="tiny", query=QUERY, documents=DOCS)
    cut = client.rerank(model="tiny", query=QUERY, documents=DOCS, max_tokens_per_doc=8)
    assert full.meta.api_version.version == "2" and not full.meta.warnings
    assert [engine.truncate(d, 8) != d for d in DOCS] == [True, False, True]
    assert cut.meta.warnings == ["2 documents truncated to max_tokens_per_doc=8 tokens"]
    assert cut.meta.tokens.input_tokens < full.meta.tokens.input_tokens
    raw = _cohere(server, max_tokens_per_doc=8)
    assert raw["usage"]["truncated_documents"] == 2
    assert raw["usage"]["prompt_tokens"] == cut.meta.tokens.input_tokens < _cohere(server)["usage"]["prompt_tokens"]
    scored = httpx.post(f"{server.url}/score", json={"text_1": QUERY, "text_2": DOCS, "truncate_prompt_tokens": 8},
                        timeout=60).json()
    assert scored["usage"]["prompt_tokens"] == raw["usage"]["prompt_tokens"]


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "max_tokens_per_doc": 0}, 422, "max_tokens_per_doc"),
    ("/rerank", {"query": QUERY, "texts": ["a", 3]}, 422, "texts[1]"),
    ("/rerank", {"query": QUERY, "texts": []}, 422, "texts"),
    ("/rerank", {"query": "", "texts": ["a"]}, 422, "query"),
    ("/score", {"text_1": QUERY}, 422, "text_2"),
    ("/score", {"text_1": [QUERY, QUERY], "text_2": ["a"]}, 422, "text_1"),
    ("/score", {"text_1": QUERY, "text_2": []}, 422, "text_2"),
])
def test_an_error_body_carries_param_and_code(server, path, body, status, param):
    response = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == error["field"] == param and error["code"] == status
    assert error["message"] and error["type"] == "invalid_request"


def test_invalid_json_on_the_shared_rerank_path_is_a_400(server):
    response = httpx.post(f"{server.url}/rerank", content=b'{"query": ', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "body"


def test_every_path_is_guarded_by_the_api_key(engine):
    from rankwise.serve import ServeConfig

    with ThreadServer(create_app(engine, "pointwise.yes_no", config=ServeConfig(api_key="k"))) as s:
        for path in (*RERANK_PATHS, "/score", "/v1/score"):
            response = httpx.post(f"{s.url}{path}", json={"query": QUERY, "texts": DOCS}, timeout=60)
            assert response.status_code == 401 and response.json()["error"]["code"] == 401
