"""The rerank API in process (FastAPI's TestClient) over a real tiny random transformer."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from rankwise.errors import InputError
from rankwise.llm.cache import CachedBackend, OutputCache
from rankwise.methods import build_method
from rankwise.serve import RERANK_PATHS, ServeConfig, create_app
from rankwise.types import Candidate, Query
from tests.serve_cases import GOOD, JSON, bad_inputs, check_error, check_ranking
from tests.tiny_lm import tiny_backend


@pytest.fixture(scope="module")
def engine():
    return tiny_backend(dtype="float32")


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine, "pointwise.yes_no")) as c:
        yield c


def _client(engine, **config) -> TestClient:
    return TestClient(create_app(engine, "pointwise.yes_no", config=ServeConfig(**config)))


@pytest.mark.parametrize("path", RERANK_PATHS)
def test_a_rerank_has_the_common_shape_and_matches_the_method(client, engine, path):
    response = client.post(path, json=GOOD)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny-random-llama" and body["id"]
    check_ranking(body, 2)
    assert all("document" not in r for r in body["results"])
    assert set(body["usage"]) >= {"prompt_tokens", "total_tokens", "computed_tokens", "cache_hits"}
    texts = [GOOD["documents"][0], GOOD["documents"][1]["text"]]
    direct = build_method("pointwise.yes_no", engine).rerank(
        Query("q", GOOD["query"]), [Candidate(str(i), t) for i, t in enumerate(texts)])
    assert [r["index"] for r in body["results"]] == [int(d) for d in direct.docids]
    assert [r["relevance_score"] for r in body["results"]] == pytest.approx(list(direct.scores), abs=1e-5)


def test_a_pairwise_server_reports_its_comparisons(engine):
    with TestClient(create_app(engine, "pairwise.allpairs")) as c:
        usage = c.post("/v1/rerank", json=GOOD).json()["usage"]
    assert usage["prompts"] == 2 and usage["comparisons"] == 1  # one pair, both orders
    texts = [GOOD["documents"][0], GOOD["documents"][1]["text"]]
    direct = build_method("pairwise.allpairs", engine).rerank(
        Query("q", GOOD["query"]), [Candidate(str(i), t) for i, t in enumerate(texts)])
    assert usage["inconsistent_comparisons"] == direct.usage.inconsistent


def test_top_n_and_return_documents(client):
    docs = [f"passage number {i} about Paris" for i in range(5)] + [{"text": "bread", "id": "x", "meta": {"a": 1}}]
    body = client.post("/v1/rerank", json={"query": "Paris", "documents": docs, "top_n": 2,
                                           "return_documents": True, "model": "anything"}).json()
    assert len(body["results"]) == 2
    for r in body["results"]:
        original = docs[r["index"]]
        assert r["document"]["text"] == (original if isinstance(original, str) else original["text"])
    assert client.post("/v1/rerank", json={**GOOD, "top_n": 50}).json()["results"].__len__() == 2


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.name)
def test_a_bad_input_gets_its_4xx_and_the_server_keeps_serving(client, case):
    check_error(client.post("/v1/rerank", content=case.body, headers=dict(case.headers)), case.status, case.field)
    check_ranking(client.post("/v1/rerank", json=GOOD).json(), 2)


def test_long_documents_are_truncated_or_rejected(engine):
    long_doc = "Paris is the capital of France. " * 100  # 3,200 characters
    request = {"query": "capital", "documents": ["short", long_doc], "return_documents": True}
    with _client(engine, max_document_chars=1000) as c:
        body = c.post("/v1/rerank", json=request).json()
        assert {r["index"]: r["document"]["text"] for r in body["results"]}[1] == long_doc
    with _client(engine, max_document_chars=1000, long_documents="reject") as c:
        check_error(c.post("/v1/rerank", json=request), 422, "documents[1]")
        assert "1000" in c.post("/v1/rerank", json=request).json()["error"]["message"]


def test_the_document_limit_is_configurable(engine):
    with _client(engine, max_documents=3) as c:
        check_error(c.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 4}), 422, "documents")
        check_ranking(c.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 3}).json(), 3)


def test_the_body_limit_is_checked_before_parsing(engine):
    with _client(engine, max_body_bytes=200) as c:
        check_error(c.post("/v1/rerank", json={"query": "q", "documents": ["a" * 300]}), 413, "body")
        check_error(c.post("/v1/rerank", content=b"{" * 500, headers=JSON), 413, "body")  # never parsed
        check_ranking(c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).json(), 1)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                                     {"Authorization": "Bearer"}], ids=["missing", "wrong", "basic", "empty"])
def test_auth_refuses_a_missing_or_wrong_token(engine, headers):
    with _client(engine, api_key="s3cret") as c:
        response = c.post("/v1/rerank", json=GOOD, headers=headers)
        check_error(response, 401, "Authorization")
        assert response.headers["www-authenticate"] == "Bearer"
        check_error(c.get("/metrics", headers=headers), 401, "Authorization")
        check_error(c.post("/v1/rerank", content=b"not json", headers={**headers, **JSON}), 401, "Authorization")
        ok = {"Authorization": "Bearer s3cret"}
        check_ranking(c.post("/v1/rerank", json=GOOD, headers=ok).json(), 2)
        assert c.get("/metrics", headers=ok).status_code == 200
        assert c.get("/health").status_code == 200
        schema = c.get("/openapi.json").json()
        assert schema["paths"]["/v1/rerank"]["post"]["security"] == [{"bearer": []}]


def test_a_request_over_the_time_limit_gets_408_and_its_work_is_withdrawn(engine):
    with _client(engine, request_timeout=0.3, batch_wait_ms=3000) as c:
        batcher = c.app.state.batcher
        with batcher.request_scope():  # another request in flight: the batcher waits for it to submit
            start = time.perf_counter()
            check_error(c.post("/v1/rerank", json=GOOD), 408, None)
            assert time.perf_counter() - start < 2.0
        check_ranking(c.post("/v1/rerank", json=GOOD).json(), 2)


def test_repeated_requests_come_from_the_shared_cache(engine, tmp_path):
    store = OutputCache(tmp_path / "outputs.sqlite")
    with TestClient(create_app(engine, "pointwise.yes_no", cache=store)) as c:
        first = c.post("/v1/rerank", json=GOOD).json()
        second = c.post("/v1/rerank", json=GOOD).json()
    assert first["usage"]["cache_hits"] == 0 and first["usage"]["computed_tokens"] > 0
    assert second["usage"]["cache_hits"] == 2 and second["usage"]["computed_tokens"] == 0
    assert second["results"] == first["results"]
    assert len(store) == 2  # the same file the CLI's `rankwise rerank` reads and writes


def test_the_server_answers_from_what_a_cli_run_cached(engine, tmp_path):
    path = tmp_path / "outputs.sqlite"
    texts = [GOOD["documents"][0], GOOD["documents"][1]["text"]]
    cli_side = CachedBackend(engine, OutputCache(path), model_key=engine.name)  # as load_backend(cache=path)
    build_method("pointwise.yes_no", cli_side).rerank(Query("q1", GOOD["query"]),
                                                       [Candidate(f"d{i}", t) for i, t in enumerate(texts)])
    with TestClient(create_app(engine, "pointwise.yes_no", cache=OutputCache(path))) as c:
        assert c.post("/v1/rerank", json=GOOD).json()["usage"]["cache_hits"] == 2


def test_health_metrics_and_docs(client):
    assert client.get("/health").json() == {"status": "ok", "model": "tiny-random-llama",
                                            "method": "pointwise.yes_no", "engine": "transformers",
                                            "dtype": "float32"}
    client.post("/v1/rerank", json=GOOD)
    client.post("/v1/rerank", content=b"{", headers=JSON)
    text = client.get("/metrics").text
    for line in ('rankwise_http_requests_total{path="/v1/rerank",status="200"}',
                 'rankwise_http_requests_total{path="/v1/rerank",status="400"}',
                 "rankwise_http_request_seconds_bucket", "rankwise_prompts_total", "rankwise_documents_total",
                 "rankwise_batch_prompts_bucket", "rankwise_batch_calls_bucket", "rankwise_cache_hits_total"):
        assert line in text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["RerankRequest"]
    assert set(request["required"]) == {"query", "documents"}
    assert {"type": "string"} in request["properties"]["documents"]["items"]["anyOf"]
    assert "RerankResponse" in schema["components"]["schemas"]
    assert "ErrorResponse" in json.dumps(schema["paths"]["/v1/rerank"]["post"]["responses"]["422"])


def test_unknown_paths_and_methods_answer_json(client):
    check_error(client.get("/nope"), 404, None)
    check_error(client.get("/v1/rerank"), 405, None)


def test_bad_settings_are_refused_before_serving(engine):
    with pytest.raises(InputError, match="long-documents"):
        ServeConfig(long_documents="drop")
    with pytest.raises(InputError, match="max-documents"):
        ServeConfig(max_documents=0)
    with pytest.raises(InputError, match="pointwise.yes_no"):
        create_app(engine, "pointwise.yesno")
