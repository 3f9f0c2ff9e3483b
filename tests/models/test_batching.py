"""BatchingBackend: concurrent calls merge into shared backend calls on a real (tiny, random) transformer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rankwise.llm.batching import BatchingBackend, RequestCancelled, RequestTimeout
from tests.tiny_lm import tiny_backend

CHOICES = ["Yes|yes", "No|no"]


@pytest.fixture(scope="module")
def engine():
    return tiny_backend(dtype="float32", batch_size=4)


def _prompts(i: int, n: int = 3) -> list[str]:
    return [f"Query: capital of France {i} Passage: the capital of France is Paris {j}" for j in range(n)]


def _concurrently(batcher: BatchingBackend, n: int, call) -> list:
    """Run call(i) in n threads, each in its own request scope, all submitting at about the same time."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def worker(i: int) -> None:
        try:
            with batcher.request_scope():
                barrier.wait()
                answer = call(i)
                results[i] = (answer, answer.usage)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_calls_share_one_backend_call_and_get_their_own_rows(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=2000, observer=batches.append)
    try:
        results = _concurrently(batcher, 4, lambda i: batcher.choice_logprobs(_prompts(i), CHOICES))
    finally:
        batcher.close()
    assert [(b.calls, b.prompts) for b in batches] == [(4, 12)]
    for i, (rows, usage) in enumerate(results):
        np.testing.assert_allclose(rows, engine.choice_logprobs(_prompts(i), CHOICES), atol=1e-4)
        assert usage.calls == 3 and usage.forward_passes >= 1 and usage.computed_tokens > 0


def test_reserved_requests_are_waited_for_even_when_their_threads_start_late(engine):
    """Without a reservation the first thread's call runs alone while the others are still starting (the
    query-batching race on a loaded machine); reserved, they all join the first call."""
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=5000, observer=batches.append)
    batcher.reserve(3)

    def worker(i: int) -> None:
        time.sleep(0.3 * i)  # threads that start late
        with batcher.request_scope():
            batcher.choice_logprobs(_prompts(i), CHOICES)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        batcher.close()
    assert [(b.calls, b.prompts) for b in batches] == [(3, 9)]


def test_calls_with_different_choices_run_separately(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=2000, observer=batches.append)
    try:
        results = _concurrently(batcher, 4, lambda i: batcher.choice_logprobs(
            _prompts(i, 2), CHOICES if i % 2 else ["0", "1", "2"]))
    finally:
        batcher.close()
    assert sorted((b.calls, b.prompts) for b in batches) == [(2, 4), (2, 4)]
    assert [r[0].shape for r in results] == [(2, 3), (2, 2), (2, 3), (2, 2)]


def test_the_prompt_cap_bounds_a_merged_call(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=2000, max_batch_prompts=6, observer=batches.append)
    try:
        _concurrently(batcher, 4, lambda i: batcher.choice_logprobs(_prompts(i), CHOICES))
    finally:
        batcher.close()
    assert sum(b.prompts for b in batches) == 12
    assert all(b.prompts <= 6 for b in batches) and len(batches) == 2


def test_a_lone_request_does_not_wait(engine):
    batcher = BatchingBackend(engine, max_wait_ms=5000)
    try:
        with batcher.request_scope():
            start = time.perf_counter()
            batcher.choice_logprobs(_prompts(0), CHOICES)
        assert time.perf_counter() - start < 2.0  # everyone in flight has submitted: no 5 s wait
    finally:
        batcher.close()


def test_generate_merges_calls_with_the_same_settings(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=2000, observer=batches.append)
    try:
        results = _concurrently(batcher, 2, lambda i: batcher.generate(_prompts(i, 1), max_new_tokens=3))
    finally:
        batcher.close()
    assert [(b.kind, b.calls) for b in batches] == [("generate", 2)]
    for i, (text, usage) in enumerate(results):
        assert text == engine.generate(_prompts(i, 1), max_new_tokens=3)
        assert usage.completion_tokens > 0


def test_continuation_scoring_merges_too(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=2000, observer=batches.append)
    try:
        results = _concurrently(batcher, 2, lambda i: batcher.continuation_logprobs(
            _prompts(i, 2), ["capital of France", "Paris"]))
    finally:
        batcher.close()
    assert [(b.kind, b.calls, b.prompts) for b in batches] == [("continuation_logprobs", 2, 4)]
    for i, (rows, _) in enumerate(results):
        np.testing.assert_allclose(rows, engine.continuation_logprobs(_prompts(i, 2), ["capital of France", "Paris"]),
                                   atol=1e-4)


def test_a_passed_deadline_withdraws_the_queued_work(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=1500, observer=batches.append)
    calls_before = engine.usage.calls
    try:
        with batcher.request_scope():  # a second request in flight that never submits: the batcher waits
            with batcher.request_scope(deadline=time.perf_counter() + 0.2):
                with pytest.raises(RequestTimeout):
                    batcher.choice_logprobs(_prompts(0), CHOICES)
        time.sleep(2.0)
    finally:
        batcher.close()
    assert batches == [] and engine.usage.calls == calls_before


def test_an_engine_error_reaches_every_merged_caller_and_the_worker_survives(engine):
    batcher = BatchingBackend(engine, max_wait_ms=2000)
    try:
        with batcher.request_scope(), pytest.raises(ValueError, match="no tokens"):
            batcher.choice_logprobs(_prompts(0), ["|", "No"])
        with batcher.request_scope():
            assert batcher.choice_logprobs(_prompts(0), CHOICES).shape == (3, 2)
    finally:
        batcher.close()


def test_outside_a_request_usage_is_the_engines_and_close_stops_the_worker(engine):
    batcher = BatchingBackend(engine)
    assert batcher.usage is engine.usage
    assert batcher.name == engine.name and batcher.count_tokens("Paris") == engine.count_tokens("Paris")
    assert batcher.choice_logprobs([], CHOICES).shape == (0, 2)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.choice_logprobs(_prompts(0), CHOICES)


def test_chunks_bound_each_backend_call_and_join_into_the_same_answer(engine):
    batches = []
    batcher = BatchingBackend(engine, max_wait_ms=0, observer=batches.append, chunk_prompts=4)
    try:
        with batcher.request_scope():
            rows = batcher.choice_logprobs(_prompts(0, 10), CHOICES)
    finally:
        batcher.close()
    assert [b.prompts for b in batches] == [4, 4, 2]
    np.testing.assert_allclose(rows, engine.choice_logprobs(_prompts(0, 10), CHOICES), atol=1e-4)
    assert rows.usage.calls == 10 and rows.usage.forward_passes >= 3  # a prefix pass per chunk too


def test_a_set_stop_event_ends_the_call_at_the_next_chunk(engine):
    batches, stop = [], threading.Event()

    def observe(stats) -> None:
        batches.append(stats)
        stop.set()  # the client goes away while the first chunk runs

    batcher = BatchingBackend(engine, max_wait_ms=0, observer=observe, chunk_prompts=4)
    try:
        with batcher.request_scope(stop=stop), pytest.raises(RequestCancelled):
            batcher.choice_logprobs(_prompts(0, 12), CHOICES)
    finally:
        batcher.close()
    assert len(batches) == 1


def test_a_new_request_runs_before_the_next_chunk_of_a_large_one(engine):
    batches, order = [], []
    batcher = BatchingBackend(engine, max_wait_ms=0, observer=batches.append, chunk_prompts=4)
    started = threading.Event()

    def large() -> None:
        with batcher.request_scope():
            started.set()
            batcher.choice_logprobs(_prompts(0, 40), CHOICES)
            order.append("large")

    def small() -> None:
        with batcher.request_scope():
            batcher.choice_logprobs(_prompts(1, 3), CHOICES)
            order.append("small")

    try:
        threads = [threading.Thread(target=large)]
        threads[0].start()
        started.wait(10)
        wait_until = time.monotonic() + 10
        while not batches and time.monotonic() < wait_until:  # the large request's first chunk has run
            time.sleep(0.001)
        threads.append(threading.Thread(target=small))
        threads[1].start()
        for t in threads:
            t.join(60)
    finally:
        batcher.close()
    assert order == ["small", "large"]
    assert 3 in [b.prompts for b in batches]  # the small request ran alone, not merged with a chunk
