"""Admission control: at most ``max_in_flight`` rerank requests at once; the next gets 429 with Retry-After."""

from __future__ import annotations

import math
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from rankwise.serve.errors import error_response

_SMOOTHING = 0.2  # weight of the newest latency in the running estimate


class AdmissionLimit:
    """ASGI middleware for POSTs to ``paths``: a request beyond ``max_in_flight`` is refused before its body
    is read, with ``Retry-After`` set to the running estimate of one request's latency (at least 1 s)."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, paths: frozenset[str]):
        self.app = app
        self.max_in_flight = max_in_flight
        self.paths = paths
        self.in_flight = 0
        self.latency = 1.0  # seconds, exponentially smoothed over completed requests

    def retry_after(self) -> int:
        return max(1, math.ceil(self.latency))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:  # one event loop: no lock needed between check and increment
            wait = self.retry_after()
            await error_response(429, f"the server is busy ({self.in_flight} requests in flight, the limit is "
                                      f"{self.max_in_flight}); retry after {wait} s", None,
                                 headers={"Retry-After": str(wait)})(scope, receive, send)
            return
        self.in_flight += 1
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.latency += _SMOOTHING * (time.perf_counter() - start - self.latency)
