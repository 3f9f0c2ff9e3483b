"""One request must not stall the service: bounded chunks, deadlines, disconnects, a concurrency limit (429)
and slow-client timeouts, over real loopback HTTP with a real tiny transformer."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from rankwise.serve import ServeConfig, create_app
from rankwise.serve.slow_clients import uvicorn_settings
from tests.serve_server import ThreadServer, metric, wait_for
from tests.tiny_lm import tiny_backend

BIG = [f"the capital of France is Paris plants make food from light {i} " * 30 for i in range(400)]
SMALL = {"query": "capital of France", "documents": ["Paris is the capital.", "Bread rises."]}


@pytest.fixture(scope="module")
def engine():
    return tiny_backend(dtype="float32", batch_size=8)


def _serve(engine, **limits) -> ThreadServer:
    config = ServeConfig(**limits)
    return ThreadServer(create_app(engine, "pointwise.yes_no", config=config), **uvicorn_settings(config))


def _post_in_background(url: str, body: dict, timeout: float = 120) -> dict:
    reply: dict = {}

    def ask() -> None:
        try:
            reply["response"] = httpx.post(f"{url}/v1/rerank", json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            reply["error"] = exc
        reply["at"] = time.monotonic()

    reply["thread"] = threading.Thread(target=ask)
    reply["thread"].start()
    return reply


def _prompts_done(url: str) -> float:
    return metric(url, "rankwise_batch_prompts_sum")


def test_small_requests_are_answered_between_the_chunks_of_a_large_one(engine):
    with _serve(engine, chunk_prompts=8) as s:
        big = _post_in_background(s.url, {"query": "capital", "documents": BIG})
        wait_for(lambda: _prompts_done(s.url) >= 16)  # the large request is being computed
        start = time.monotonic()
        small = httpx.post(f"{s.url}/v1/rerank", json=SMALL, timeout=60)
        answered = time.monotonic()
        big["thread"].join(120)
    assert small.status_code == 200 and big["response"].status_code == 200
    assert answered < big["at"]  # not queued behind the whole large request
    assert len(big["response"].json()["results"]) == len(BIG)
    assert answered - start < (big["at"] - start) / 2


def test_a_timed_out_request_stops_computing_within_one_chunk(engine):
    with _serve(engine, chunk_prompts=8, request_timeout=1.0) as s:
        response = httpx.post(f"{s.url}/v1/rerank", json={"query": "capital", "documents": BIG}, timeout=60)
        assert response.status_code == 408 and response.json()["error"]["type"] == "timeout"
        time.sleep(0.5)
        done = _prompts_done(s.url)
        time.sleep(1.0)
        assert _prompts_done(s.url) == done < len(BIG)  # nothing more computed for it
        assert metric(s.url, 'rankwise_requests_stopped_total{reason="timeout"}') == 1
        late = metric(s.url, "rankwise_batch_late_seconds_sum")
        assert late <= metric(s.url, "rankwise_batch_run_seconds_sum") / max(metric(
            s.url, "rankwise_batch_run_seconds_count"), 1) * 3 + 0.5  # about one chunk's run time at most
        assert httpx.post(f"{s.url}/v1/rerank", json=SMALL, timeout=60).status_code == 200


def test_a_client_that_goes_away_stops_its_computation(engine):
    with _serve(engine, chunk_prompts=8) as s:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(f"{s.url}/v1/rerank", json={"query": "capital", "documents": BIG}, timeout=1.0)
        wait_for(lambda: metric(s.url, 'rankwise_requests_stopped_total{reason="disconnected"}') == 1, 10)
        time.sleep(0.3)
        done = _prompts_done(s.url)
        time.sleep(1.0)
        assert _prompts_done(s.url) == done < len(BIG)
        assert metric(s.url, 'rankwise_http_requests_total{path="/v1/rerank",status="499"}') == 1


def test_a_full_server_answers_429_with_retry_after(engine):
    with _serve(engine, chunk_prompts=8, max_in_flight=1) as s:
        big = _post_in_background(s.url, {"query": "capital", "documents": BIG})
        wait_for(lambda: _prompts_done(s.url) >= 8)
        refused = httpx.post(f"{s.url}/v1/rerank", json=SMALL, timeout=60)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_requests"
        assert int(refused.headers["Retry-After"]) >= 1
        assert httpx.get(f"{s.url}/health").status_code == 200  # only rerank requests count
        big["thread"].join(120)
        assert big["response"].status_code == 200
        assert httpx.post(f"{s.url}/v1/rerank", json=SMALL, timeout=60).status_code == 200
        assert metric(s.url, 'rankwise_setting{name="max_in_flight"}') == 1


def _closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock``, and what it sent."""
    sock.settimeout(limit)
    start, data = time.monotonic(), b""
    while chunk := sock.recv(4096):
        data += chunk
    return time.monotonic() - start, data


@pytest.fixture
def timeouts_server(engine):
    with _serve(engine, header_timeout=1.0, body_timeout=1.0, keep_alive_timeout=1.0) as s:
        yield s


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def test_an_idle_connection_is_closed_at_the_header_timeout(timeouts_server):
    with _connect(timeouts_server.url) as sock:
        took, data = _closed_after(sock, 10)
    assert 0.8 < took < 3 and data.startswith(b"HTTP/1.1 408")


def test_slow_headers_are_closed_at_the_header_timeout(timeouts_server):
    with _connect(timeouts_server.url) as sock:
        start = time.monotonic()
        for part in (b"POST /v1/rerank HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Type: application/json\r\n"):
            sock.sendall(part)
            time.sleep(0.4)
        _, data = _closed_after(sock, 10)
    assert time.monotonic() - start < 3 and b"408" in data and b"headers not received" in data


def test_a_slow_body_gets_408_at_the_body_timeout(timeouts_server):
    with _connect(timeouts_server.url) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"query\": ")
        took, data = _closed_after(sock, 10)
    assert took < 3 and data.startswith(b"HTTP/1.1 408") and b"body: not received within 1 s" in data


def test_an_idle_keep_alive_connection_is_closed(timeouts_server):
    with httpx.Client(base_url=timeouts_server.url) as client:
        assert client.post("/v1/rerank", json=SMALL).status_code == 200
    with _connect(timeouts_server.url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        took, data = _closed_after(sock, 10)
    assert data.startswith(b"HTTP/1.1 200") and took < 3


def _scores(response: httpx.Response) -> dict[int, float]:
    assert response.status_code == 200, response.text
    return {r["index"]: r["relevance_score"] for r in response.json()["results"]}


# Exact because the transformers engine is batch-invariant (merged in 7a4c1a7): prefix sharing and padding
# across merged requests no longer move scores. The batcher and the cache add no dependence of their own
# (chunking keeps each request's rows; the cache keeps the first value).
def test_the_same_requests_alone_and_under_concurrency_get_identical_scores():
    engine = tiny_backend(batch_size=8)  # the engine's default mode (dtype chosen for this machine)
    bodies = [{"query": f"capital of France {i}", "documents": [f"Paris is the capital {i} {j} " * (1 + j % 4)
                                                                 for j in range(12)]} for i in range(16)]
    with _serve(engine, chunk_prompts=8, max_in_flight=32) as s:
        with httpx.Client(base_url=s.url, timeout=120) as client:
            alone = [_scores(client.post("/v1/rerank", json=b)) for b in bodies]
        for concurrency in (8, 16):
            barrier, loaded = threading.Barrier(concurrency), [None] * len(bodies)

            def ask(i: int) -> None:
                with httpx.Client(base_url=s.url, timeout=120) as client:
                    for j in range(i, len(bodies), concurrency):
                        if j < concurrency:
                            barrier.wait()
                        loaded[j] = _scores(client.post("/v1/rerank", json=bodies[j]))

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert metric(s.url, "rankwise_batch_calls_sum") > metric(s.url, "rankwise_batch_calls_count")
            assert loaded == alone, f"concurrency {concurrency}"
