"""What the service accepts: size limits, time limit, auth; checked before the body is parsed where possible."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import anyio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankwise.errors import InputError
from rankwise.serve.errors import ApiError, error_response
from rankwise.serve.schemas import RerankRequest

LONG_DOCUMENT_POLICIES = ("truncate", "reject")


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching settings of one server (``rankwise serve`` flags)."""

    max_documents: int = 1000
    max_document_chars: int = 20_000
    long_documents: str = "truncate"  # "truncate": cut to max_document_chars, then the method's token budget
    max_query_chars: int = 2_000
    max_body_bytes: int = 2 * 1024 * 1024
    request_timeout: float = 60.0
    api_key: str | None = None
    batch_wait_ms: float = 5.0
    max_batch_prompts: int = 128
    chunk_prompts: int = 16          # a request's prompts go to the model this many at a time
    max_in_flight: int = 8           # rerank requests computed or queued at once; more: 429
    header_timeout: float = 10.0     # seconds for a request's headers (from its first byte, or the connection)
    body_timeout: float = 30.0       # seconds for a request's body
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_chars", "max_query_chars", "max_body_bytes",
                     "max_batch_prompts", "chunk_prompts", "max_in_flight"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1")
        for name in ("request_timeout", "header_timeout", "body_timeout", "keep_alive_timeout"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name.replace('_', '-')} must be positive")
        if self.batch_wait_ms < 0:
            raise InputError("batch-wait-ms must not be negative")
        if self.long_documents not in LONG_DOCUMENT_POLICIES:
            raise InputError(f"long-documents must be one of {', '.join(LONG_DOCUMENT_POLICIES)}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError("api-key must not be empty")


def document_texts(request: RerankRequest, config: ServeConfig) -> list[str]:
    """The documents' texts after the limits; raises ApiError (naming the field) on a violation."""
    if not request.query.strip():
        raise ApiError(422, "query: must not be empty", "query")
    if len(request.query) > config.max_query_chars:
        raise ApiError(422, f"query: {len(request.query)} characters, more than the limit of "
                            f"{config.max_query_chars}", "query")
    _check_encodable(request.query, "query")
    if not request.documents:
        raise ApiError(422, "documents: give at least one document", "documents")
    if len(request.documents) > config.max_documents:
        raise ApiError(422, f"documents: {len(request.documents)} documents, more than the limit of "
                            f"{config.max_documents} per request", "documents")
    texts = []
    for i, doc in enumerate(request.documents):
        text = doc.text
        if len(text) > config.max_document_chars:
            if config.long_documents == "reject":
                raise ApiError(422, f"documents[{i}]: {len(text)} characters, more than the limit of "
                                    f"{config.max_document_chars}", f"documents[{i}]")
            text = text[:config.max_document_chars]
        _check_encodable(text, f"documents[{i}]")
        texts.append(text)
    return texts


def _check_encodable(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(422, f"{field}: holds an unpaired surrogate ({text[exc.start]!r}) at character "
                            f"{exc.start}; send valid Unicode", field) from None


class RequestGuard:
    """ASGI middleware run before FastAPI parses anything: bearer-token auth on ``protected`` paths, then,
    for POSTs to ``json_paths``, the content type, the body size (declared and actual) and UTF-8."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, api_key: str | None,
                 protected: frozenset[str], json_paths: frozenset[str], body_timeout: float = 30.0):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.api_key = api_key
        self.protected = protected
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        if self.api_key is not None and path in self.protected and not self._authorized(headers):
            given = "a wrong" if headers.get("authorization") else "no"
            await error_response(401, f"{given} API key: send 'Authorization: Bearer <key>'", "Authorization",
                                 headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if path in self.json_paths and scope["method"] == "POST":
            try:
                with anyio.fail_after(self.body_timeout):
                    body = await self._read_body(headers, receive)
            except TimeoutError:
                await error_response(408, f"body: not received within {self.body_timeout:g} s", "body",
                                     headers={"Connection": "close"})(scope, receive, send)
                return
            except ApiError as err:
                await error_response(err.status, err.message, err.field)(scope, receive, send)
                return
            if body is None:  # the client went away
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if not (content_type == "application/json" or content_type.endswith("+json")):
            raise ApiError(415, "send the body as JSON with 'Content-Type: application/json'", "Content-Type")
        limit = self.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"body: {int(declared)} bytes, more than the limit of {limit}", "body")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                raise ApiError(413, f"body: more than the limit of {limit} bytes", "body")
            if not message.get("more_body", False):
                break
        if not body.strip():
            raise ApiError(400, "body: empty; send a JSON object with 'query' and 'documents'", "body")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"body: not valid UTF-8 (byte {exc.start})", "body") from None
        return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that gives the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
