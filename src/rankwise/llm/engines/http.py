"""JSON over HTTP for the remote engines (OpenAI-compatible servers, rerank APIs): one client with a timeout,
retries with exponential backoff that honour ``Retry-After``, a concurrency limit, and errors that name the
URL, the status and the server's own message.

Connection errors, timeouts and HTTP 408, 429 and 5xx are retried ``max_retries`` times; the wait doubles from
``backoff`` seconds (at most 30 s) unless the server's ``Retry-After`` (seconds or an HTTP date, at most 60 s)
says otherwise. Any other 4xx fails at once with an :class:`HttpStatusError`.
"""

from __future__ import annotations

import email.utils
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import httpx

from rankwise.errors import InputError, RankwiseError

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0


class HttpStatusError(InputError):
    """The server refused the request (a 4xx not worth retrying): the URL, the status, its message."""

    def __init__(self, url: str, status: int, message: str):
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.url, self.status, self.server_message = url, status, message


def server_message(response: httpx.Response, limit: int = 300) -> str:
    """The error message in a server's answer: ``{"error": {"message"}}`` (OpenAI, vLLM, rankwise),
    ``{"error": "..."}`` (TEI), ``{"message"}`` (Cohere, vLLM), ``{"detail"}`` (FastAPI), else the text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:limit] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        for found in (error.get("message") if isinstance(error, dict) else error, data.get("message"),
                      data.get("detail")):
            if found:
                return (found if isinstance(found, str) else str(found))[:limit]
    return response.text[:limit]


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), at most 60; None if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class JsonHttp:
    """POSTs JSON with retries, and runs the requests of one call ``concurrency`` at a time."""

    def __init__(self, *, timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5, concurrency: int = 4,
                 headers: dict[str, str] | None = None):
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = max(1, concurrency)
        self.client = httpx.Client(timeout=timeout, headers=headers or {},
                                   limits=httpx.Limits(max_connections=self.concurrency))

    def close(self) -> None:
        self.client.close()

    def post(self, url: str, body: dict, optional: bool = False) -> object:
        """The JSON answer to POSTing ``body``; ``optional``: None when the server lacks the endpoint."""
        last, delay = "", 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(delay)
            delay = min(self.backoff * 2 ** attempt, 30.0)
            try:
                response = self.client.post(url, json=body)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {server_message(response, 200)}"
                wait = retry_after(response.headers.get("retry-after"))
                delay = delay if wait is None else wait
                continue
            if optional and (400 <= response.status_code < 500 or response.status_code == 501):
                return None  # probing: this server has no such endpoint
            if response.status_code >= 400:
                raise HttpStatusError(url, response.status_code, server_message(response))
            try:
                return response.json()
            except ValueError:
                raise RankwiseError(f"{url}: the server answered something that is not JSON: "
                                    f"{response.text[:200]!r}") from None
        raise RankwiseError(f"{url}: no answer after {self.max_retries + 1} attempts: {last}")

    def parallel(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items``, ``concurrency`` at a time, results in order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))
