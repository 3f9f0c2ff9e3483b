"""Every failure is a JSON body ``{"error": {"message", "field", "type", "param", "code"}}`` with a fitting
status code: ``param`` repeats ``field`` and ``code`` the status, as OpenAI-style (vLLM, Infinity) clients read."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          408: "timeout", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
          429: "too_many_requests", 499: "client_closed_request", 500: "internal_error"}


class ApiError(Exception):
    """An error answered to the client as JSON; ``field`` names what was wrong, if one field was."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "field": field, "type": _TYPES.get(status, "error"),
                                   "param": field, "code": status}}, status_code=status, headers=headers)


def field_path(loc: tuple) -> str | None:
    """('body', 'documents', 3, 'text') -> 'documents[3].text'."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        pos = first["loc"][-1]
        return error_response(400, f"invalid JSON: {detail} (at character {pos})", "body")
    field = field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if field is None and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
        message = "the body must be a JSON object with 'query' and 'documents'"
    return error_response(422, f"{field}: {message}" if field else message, field or "body")


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))


def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.field, exc.headers)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s", request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _unexpected)
