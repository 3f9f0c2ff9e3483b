"""Dynamic micro-batching at the backend level: concurrent requests share forward passes.

``BatchingBackend`` wraps any Backend. Calls to its primitives from many request threads are queued; one
worker thread takes the first call, waits up to ``max_wait_ms`` for more (or until ``max_batch_prompts``
prompts are waiting, or every request in flight has submitted), merges the calls that can run together
(same choices, same generation settings) into one call of the wrapped backend, and hands each caller its
rows. Waiting work runs least-served first: requests' first work goes before (and is not merged with) the
later chunks of requests already served, so small requests are not queued behind a large one. The wrapped backend is only ever called from the worker thread, so engines need no locking, and the
transformers engine also shares the common prompt prefix across the merged requests.

With ``chunk_prompts`` a caller's call is cut into chunks of at most that many prompts, submitted one after
another: other callers' work runs between a large call's chunks, and a caller whose deadline passed or whose
``stop`` event was set (the HTTP client went away) stops at the next chunk boundary; its queued chunk is
withdrawn and the worker skips work whose deadline has passed.

Each caller's answer carries its share of the merged call's usage (its own prompts, tokens in proportion,
every forward pass it took part in), so the cost of a request is what its answers say, whatever ran beside
it. The HTTP service uses it for concurrent requests, and a pipeline run for the queries it reranks
together (``rankwise.pipeline``: the same step of many queries in one backend call).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from rankwise.llm.protocol import Scores, Texts, call_usage, usage_of
from rankwise.types import Usage

log = logging.getLogger(__name__)

_STOP = object()
_WAKE = object()  # a request scope ended: the worker recounts who is still to submit
_POLL = 0.05  # seconds between checks of a request's stop event while it waits
# Counters shared out in proportion to each caller's prompts; forward_passes are counted in full
# (every merged caller took part in each pass).
_SHARED = ("prompt_tokens", "computed_tokens", "completion_tokens", "parse_failures")


class RequestTimeout(Exception):
    """A request's deadline passed while its work waited for the model."""


class RequestCancelled(Exception):
    """A request was stopped (its client went away) while its work waited for the model."""


@dataclass(frozen=True)
class BatchStats:
    """What one merged backend call held: handed to the ``observer`` after every call."""

    kind: str
    calls: int
    prompts: int
    queue_seconds: tuple[float, ...]  # how long each merged call waited before the batch ran
    run_seconds: float
    late_seconds: tuple[float, ...] = ()  # for each merged call that finished past its deadline: by how much


@dataclass
class _Job:
    kind: str           # "choice_logprobs", "choice_logits", "generate", "continuation_logprobs"
    key: tuple          # jobs with equal (kind, key) can be merged
    items: list         # prompts (or (prompt, continuation) pairs)
    deadline: float | None = None
    served: int = 0     # prompts of the same request computed before this job (the scheduling priority)
    enqueued: float = field(default_factory=time.perf_counter)
    future: Future = field(default_factory=Future)


class BatchingBackend:
    """A Backend whose primitive calls from concurrent threads are merged into shared backend calls."""

    def __init__(self, backend, max_wait_ms: float = 5.0, max_batch_prompts: int = 128,
                 observer: Callable[[BatchStats], None] | None = None, chunk_prompts: int | None = None):
        if max_batch_prompts < 1:
            raise ValueError("max_batch_prompts must be at least 1")
        if chunk_prompts is not None and chunk_prompts < 1:
            raise ValueError("chunk_prompts must be at least 1")
        self.chunk_prompts = chunk_prompts
        self.backend = backend
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_batch_prompts = max_batch_prompts
        self.observer = observer
        self._queue: queue.Queue = queue.Queue()
        self._local = threading.local()
        self._active = 0
        self._reserved = 0
        self._active_lock = threading.Lock()
        self._closed = False
        self._close_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="rankwise-batcher", daemon=True)
        self._worker.start()

    # -- delegation --------------------------------------------------------------------------------
    def __getattr__(self, item):
        # format_chat, count_tokens, truncate, name, engine, dtype, ... come from the wrapped backend.
        return getattr(self.backend, item)

    @property
    def usage(self) -> Usage:
        """The engine's running total."""
        return self.backend.usage

    @contextmanager
    def request_scope(self, deadline: float | None = None, stop: threading.Event | None = None) -> Iterator[None]:
        """Mark this thread as working on one request (or query) until the block ends: the worker merges
        what the threads in flight submit, and runs as soon as every one of them has submitted.

        ``deadline`` (a ``time.perf_counter()`` value): waiting for the model past it raises RequestTimeout
        and withdraws the request's queued work; ``stop`` set: the same with RequestCancelled.
        """
        outer = (getattr(self._local, "deadline", None), getattr(self._local, "stop", None),
                 getattr(self._local, "served", 0))
        self._local.deadline, self._local.stop, self._local.served = deadline, stop, 0
        with self._active_lock:
            if self._reserved:  # counted in flight already (``reserve``)
                self._reserved -= 1
            else:
                self._active += 1
        try:
            yield
        finally:
            with self._active_lock:
                self._active -= 1
            self._local.deadline, self._local.stop, self._local.served = outer
            self._queue.put(_WAKE)  # the worker may be waiting for this thread: count again

    def reserve(self, n: int) -> None:
        """Count ``n`` requests in flight before their threads start: the worker then waits for their first
        calls too, instead of running the first thread's call alone while the others are still starting.
        The next ``n`` ``request_scope`` entries use the reservations."""
        with self._active_lock:
            self._active += n
            self._reserved += n

    # -- primitives --------------------------------------------------------------------------------
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        if not prompts:
            return Scores(np.zeros((0, len(choices)), dtype=np.float32), call_usage(self.backend))
        return self._submit("choice_logprobs", (tuple(choices),), list(prompts))

    def choice_logits(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        if not prompts:
            return Scores(np.zeros((0, len(choices)), dtype=np.float32), call_usage(self.backend))
        return self._submit("choice_logits", (tuple(choices),), list(prompts))

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        if not prompts:
            return Texts([], call_usage(self.backend))
        return self._submit("generate", (max_new_tokens, tuple(stop) if stop else None), list(prompts))

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        if not prompts:
            return Scores(np.zeros(0), call_usage(self.backend))
        return self._submit("continuation_logprobs", (), list(zip(prompts, continuations)))

    def _submit(self, kind: str, key: tuple, items: list):
        """One call's answer, computed in chunks of at most ``chunk_prompts`` prompts, one after another."""
        size = self.chunk_prompts or len(items)
        parts = [self._submit_chunk(kind, key, items[i:i + size]) for i in range(0, len(items), size)]
        if len(parts) == 1:
            return parts[0]
        used = Usage()
        for part in parts:
            used.add(usage_of(part))
        if kind == "generate":
            return Texts([text for part in parts for text in part], used)
        return Scores(np.concatenate([np.asarray(part) for part in parts]), used)

    def _submit_chunk(self, kind: str, key: tuple, items: list):
        deadline = getattr(self._local, "deadline", None)
        stop: threading.Event | None = getattr(self._local, "stop", None)
        self._check(deadline, stop)
        served = getattr(self._local, "served", 0)
        self._local.served = served + len(items)
        job = _Job(kind, key, items, deadline, served)
        with self._close_lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.put(job)
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.perf_counter())
            if stop is not None:
                wait = _POLL if wait is None else min(wait, _POLL)
            try:
                return job.future.result(timeout=wait)
            except CancelledError:  # the worker skipped it: its deadline had passed
                raise RequestTimeout("the request's time limit passed while it waited for the model") from None
            except FutureTimeout:
                try:
                    self._check(deadline, stop)
                except (RequestTimeout, RequestCancelled):
                    job.future.cancel()  # withdrawn if its batch has not started; otherwise its rows are dropped
                    raise

    @staticmethod
    def _check(deadline: float | None, stop: threading.Event | None) -> None:
        if deadline is not None and time.perf_counter() >= deadline:
            raise RequestTimeout("the request's time limit passed while it waited for the model")
        if stop is not None and stop.is_set():
            raise RequestCancelled("the request was stopped while it waited for the model")

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued work, then stop the worker; later calls raise RuntimeError."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._worker.join(timeout)

    # -- the worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        pending: list[_Job] = []  # submitted, not yet run
        stopping = False
        while pending or not stopping:
            if not pending:
                first = self._queue.get()
                if first is _STOP:
                    break
                if first is _WAKE:
                    continue
                pending.append(first)
            stopping = self._collect(pending) or stopping
            groups: dict[tuple, list[_Job]] = {}
            now = time.perf_counter()
            for job in self._take(pending):
                if job.deadline is not None and now >= job.deadline:
                    job.future.cancel()  # its caller has given up (or is about to): compute nothing for it
                elif job.future.set_running_or_notify_cancel():
                    groups.setdefault((job.kind, job.key), []).append(job)
            for jobs in groups.values():
                self._execute(jobs)

    def _collect(self, pending: list[_Job]) -> bool:
        """Add to ``pending`` whatever arrives within the wait (until the prompt cap is reached, or every
        request in flight has submitted); True if the batcher is closing."""
        pending[:] = [job for job in pending if not job.future.cancelled()]  # withdrawn by their callers
        prompts = sum(len(job.items) for job in pending)
        until = time.perf_counter() + self.max_wait
        while prompts < self.max_batch_prompts:
            with self._active_lock:
                everyone_in = len(pending) >= self._active  # no request in flight could add more
            try:
                job = self._queue.get_nowait() if everyone_in else \
                    self._queue.get(timeout=max(0.0, until - time.perf_counter()))
            except queue.Empty:
                break
            if job is _STOP:
                return True
            if job is _WAKE:
                continue
            pending.append(job)
            prompts += len(job.items)
        while True:  # what else is already queued waits in pending, to be ordered with the rest
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return False
            if job is _STOP:
                return True
            if job is not _WAKE:
                pending.append(job)

    def _take(self, pending: list[_Job]) -> list[_Job]:
        """The next batch, removed from ``pending``: requests' first work before the later chunks of requests
        already served (a small request is not merged with, nor queued behind, a large one's next chunk),
        least served then oldest first, up to the prompt cap (at least one job)."""
        pending.sort(key=lambda job: (job.served, job.enqueued))
        fresh = pending[0].served == 0
        batch, prompts = [], 0
        while pending and (not batch or (prompts + len(pending[0].items) <= self.max_batch_prompts
                                         and (pending[0].served == 0) == fresh)):
            job = pending.pop(0)
            batch.append(job)
            prompts += len(job.items)
        return batch

    def _execute(self, jobs: list[_Job]) -> None:
        kind, key = jobs[0].kind, jobs[0].key
        items = [x for job in jobs for x in job.items]
        start = time.perf_counter()
        try:
            if kind == "continuation_logprobs":
                result = self.backend.continuation_logprobs([p for p, _ in items], [c for _, c in items])
            elif kind == "generate":
                result = self.backend.generate(items, key[0], list(key[1]) if key[1] else None)
            elif kind == "choice_logits":
                result = self.backend.choice_logits(items, list(key[0]))
            else:
                result = self.backend.choice_logprobs(items, list(key[0]))
        except Exception as exc:  # every merged caller sees the engine's error; the worker keeps going
            log.exception("batched %s call failed", kind)
            for job in jobs:
                job.future.set_exception(exc)
            return
        spent = usage_of(result)
        offset = 0
        for job in jobs:
            n = len(job.items)
            share = _share(spent, n, len(items))
            rows = result[offset:offset + n]
            job.future.set_result(Texts(list(rows), share) if kind == "generate" else Scores(np.asarray(rows), share))
            offset += n
        if self.observer is not None:
            end = time.perf_counter()
            late = tuple(end - j.deadline for j in jobs if j.deadline is not None and end > j.deadline)
            self.observer(BatchStats(kind, len(jobs), len(items), tuple(start - j.enqueued for j in jobs),
                                     end - start, late))


def _share(spent: Usage, n: int, total: int) -> Usage:
    """A caller's share of a merged call's usage (all of it when the call was the caller's alone)."""
    usage = Usage(engine=spent.engine, dtype=spent.dtype, model=spent.model)
    usage.calls += n
    usage.cache_hits += round(spent.cache_hits * n / total)
    usage.forward_passes += spent.forward_passes
    usage.seconds += spent.seconds * n / total
    for name in _SHARED:
        setattr(usage, name, getattr(usage, name) + round(getattr(spent, name) * n / total))
    return usage
