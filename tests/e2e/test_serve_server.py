"""The rerank service over real loopback HTTP (uvicorn), with a real tiny transformer: concurrency,
bad input, an existing client library (cohere), and a graceful shutdown of `rankwise serve`."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from rankwise.serve import ServeConfig, create_app
from tests.serve_cases import GOOD, JSON, bad_inputs, check_error, check_ranking
from tests.serve_server import CliServer, ThreadServer, metric, wait_for
from tests.tiny_lm import save_tiny_model, tiny_backend

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server():
    app = create_app(tiny_backend(dtype="float32"), "pointwise.yes_no",
                     config=ServeConfig(api_key=KEY, batch_wait_ms=20))
    with ThreadServer(app) as s:
        yield s


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(server):
    queries = [f"capital of France {i}" for i in range(8)]
    docs = [f"the capital of France is Paris {j}" for j in range(4)]
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        alone = {q: c.post("/v1/rerank", json={"query": q, "documents": docs}).json() for q in queries}
    before = metric(server.url, "rankwise_batch_calls_count", AUTH)
    barrier, answers = threading.Barrier(len(queries)), {}

    def ask(q: str) -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
            barrier.wait()
            answers[q] = c.post("/v1/rerank", json={"query": q, "documents": docs})

    threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(answers[q].status_code == 200 for q in queries)
    for q in queries:
        got = answers[q].json()["results"]
        assert [r["index"] for r in got] == [r["index"] for r in alone[q]["results"]]
        assert [r["relevance_score"] for r in got] == pytest.approx(
            [r["relevance_score"] for r in alone[q]["results"]], abs=1e-4)
    batches = metric(server.url, "rankwise_batch_calls_count", AUTH) - before
    assert 1 <= batches < len(queries)  # some requests shared a backend call


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda c: c.name)
def test_a_bad_input_over_http_gets_its_4xx_and_the_next_request_succeeds(server, case):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        response = c.post("/v1/rerank", content=case.body, headers={**dict(case.headers), **AUTH})
        check_error(response, case.status, case.field)
        check_ranking(c.post("/v1/rerank", json=GOOD, headers=AUTH).json(), 2)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}], ids=["missing token", "wrong token"])
def test_auth_over_http(server, headers):
    with httpx.Client(base_url=server.url) as c:
        check_error(c.post("/v1/rerank", json=GOOD, headers=headers), 401, "Authorization")
        check_ranking(c.post("/v1/rerank", json=GOOD, headers=AUTH).json(), 2)


def test_a_chunked_body_over_the_limit_is_cut_off(server):
    def chunks():  # no Content-Length: the server must count what arrives
        yield b'{"query": "q", "documents": ["'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"]}'

    with httpx.Client(base_url=server.url, timeout=60) as c:
        check_error(c.post("/v1/rerank", content=chunks(), headers={**JSON, **AUTH}), 413, "body")
        check_ranking(c.post("/v1/rerank", json=GOOD, headers=AUTH).json(), 2)


def test_the_cohere_client_reranks_against_the_local_url(server):
    cohere = pytest.importorskip("cohere")
    documents = ["Paris is the capital of France.", "Sourdough bread rises because of yeast.",
                 "The capital of France is Paris."]
    with httpx.Client(base_url=server.url, headers=AUTH) as c:
        ours = c.post("/v1/rerank", json={"query": "capital of France", "documents": documents}).json()
    v2 = cohere.ClientV2(base_url=server.url, api_key=KEY, timeout=60)
    answer = v2.rerank(model="tiny-random-llama", query="capital of France", documents=documents, top_n=2)
    assert [r.index for r in answer.results] == [r["index"] for r in ours["results"][:2]]
    assert [r.relevance_score for r in answer.results] == pytest.approx(
        [r["relevance_score"] for r in ours["results"][:2]])
    v1 = cohere.Client(base_url=server.url, api_key=KEY, timeout=60)
    answer = v1.rerank(model="tiny-random-llama", query="capital of France", documents=documents,
                       return_documents=True)
    assert [(r.index, r.document.text) for r in answer.results] == [
        (r["index"], documents[r["index"]]) for r in ours["results"]]
    with pytest.raises(cohere.UnauthorizedError):
        cohere.ClientV2(base_url=server.url, api_key="wrong").rerank(
            model="m", query="capital of France", documents=documents)
    with pytest.raises(cohere.UnprocessableEntityError):
        v2.rerank(model="m", query="", documents=documents)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(path)
    return path


def test_a_shutdown_lets_the_in_flight_request_finish():
    app = create_app(tiny_backend(dtype="float32"), "pointwise.yes_no")
    docs = [f"the capital of France is Paris plants make food from light {i} " * 30 for i in range(300)]
    reply: dict = {}
    with ThreadServer(app) as s:
        def ask() -> None:
            reply["response"] = httpx.post(f"{s.url}/v1/rerank", json={"query": "capital", "documents": docs},
                                           timeout=120)
            reply["at"] = time.monotonic()

        thread = threading.Thread(target=ask)
        thread.start()
        wait_for(lambda: metric(s.url, "rankwise_http_requests_in_flight") >= 2)  # the rerank + this GET
        stopped = time.monotonic()
        s.server.should_exit = True  # what uvicorn's SIGINT/SIGTERM handler does
        thread.join(120)
    assert reply["at"] > stopped and reply["response"].status_code == 200
    check_ranking(reply["response"].json(), len(docs))
    with pytest.raises(RuntimeError, match="closed"):  # the lifespan closed the batcher after the request
        app.state.batcher.choice_logprobs(["a prompt"], ["Yes", "No"])


@pytest.mark.slow  # a Python process that loads torch: ~5 s on an idle machine, ~30 s under load
def test_rankwise_serve_finishes_in_flight_requests_on_sigterm(tiny_model_dir, tmp_path):
    server = CliServer(["--model", str(tiny_model_dir), "--method", "pointwise.yes_no", "--engine", "transformers",
                        "--no-cache"])
    long_docs = [f"the capital of France is Paris plants make food from light {i} " * 30 for i in range(300)]
    with server:
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        reply: dict = {}

        def ask() -> None:
            response = httpx.post(f"{server.url}/v1/rerank", json={"query": "capital", "documents": long_docs},
                                  timeout=120)
            reply["response"], reply["at"] = response, time.monotonic()

        thread = threading.Thread(target=ask)
        thread.start()
        wait_for(lambda: metric(server.url, "rankwise_http_requests_in_flight") >= 2)  # the rerank + this GET
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        thread.join(120)
        # uvicorn re-raises the signal it caught once it has shut down: exit status -SIGTERM
        assert server.proc.wait(60) in (0, -signal.SIGTERM)
    assert reply["at"] > signalled  # the request was in flight when the signal came, and still finished
    assert reply["response"].status_code == 200
    check_ranking(reply["response"].json(), len(long_docs))
    assert any("Finished server process" in line for line in server.log)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")
