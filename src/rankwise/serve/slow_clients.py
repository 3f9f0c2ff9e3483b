"""Timeouts for slow clients that uvicorn does not enforce itself: request headers must arrive in time.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits forever for the headers of a
request, and for the first request of a connection that sends nothing. ``HeaderTimeoutH11`` closes such a
connection ``header_timeout`` seconds after it opened (or after the first byte of a later request) with a
408. Slow bodies are timed out by ``RequestGuard`` (``body_timeout``).
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from rankwise.serve.limits import ServeConfig


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request's head has started but is not complete
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # an idle connection now waits under uvicorn's keep-alive timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"error": {"message": f"request headers not received within "
                                                    f"{self.header_timeout:g} s", "field": None,
                                         "type": "timeout"}}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(body)).encode() +
                                 b"\r\n\r\n" + body)
        self.transport.close()


def uvicorn_settings(config: ServeConfig) -> dict:
    """The uvicorn options that enforce ``config``'s slow-client timeouts (``uvicorn.run(app, **these)``)."""
    protocol = type("HeaderTimeoutH11", (HeaderTimeoutH11,), {"header_timeout": config.header_timeout})
    return {"http": protocol, "timeout_keep_alive": config.keep_alive_timeout}
