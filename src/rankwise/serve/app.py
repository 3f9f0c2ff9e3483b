"""The FastAPI application: ``POST /v1/rerank`` (and ``/rerank``, ``/v2/rerank``), ``/health``, ``/metrics``.

The method runs in a worker thread per request; its backend calls go through one ``BatchingBackend``, so
concurrent requests share forward passes. The SQLite cache sits *over* the batcher: a cached prompt is
answered in the request thread and never waits in the queue; only misses are batched.

A request's prompts reach the model in chunks (``chunk_prompts``), so requests interleave; a request past its
time limit (408) or whose client disconnected (499) stops at the next chunk. ``AdmissionLimit`` answers 429
beyond ``max_in_flight`` requests; slow clients are timed out by ``RequestGuard`` (body) and
``slow_clients`` (headers, idle connections). docs/serve.md describes the settings.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Callable

import anyio
from anyio import CancelScope
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from rankwise.llm.batching import BatchingBackend, RequestCancelled, RequestTimeout
from rankwise.llm.cache import CachedBackend, OutputCache
from rankwise.pipeline import load_reranker
from rankwise.pipeline import run as run_stage
from rankwise.serve.admission import AdmissionLimit
from rankwise.serve.errors import ApiError, install_error_handlers
from rankwise.serve.limits import RequestGuard, ServeConfig, document_texts
from rankwise.serve.metrics import MetricsMiddleware, ServeMetrics
from rankwise.serve.schemas import (DocumentOut, ErrorResponse, Health, RerankRequest, RerankResponse,
                                    RerankResult, RerankUsage)
from rankwise.serve.shapes import (PROBABILITY_METHODS, SHAPE_PATHS, add_shape_routes, cohere_meta,
                                   truncate_documents)
from rankwise.types import Candidate, Query, Ranking, Request, Usage

RERANK_PATHS = ("/v1/rerank", "/rerank", "/v2/rerank")  # /v2/rerank: where Cohere's ClientV2 posts
_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in (
    (400, "Invalid JSON, or a body that is not UTF-8"), (401, "Missing or wrong API key (when auth is on)"),
    (408, "The request took longer than the time limit"), (413, "Body larger than the limit"),
    (415, "Body not sent as application/json"),
    (422, "A field is missing, of the wrong type, empty, or over its limit"),
    (429, "The server is full (max in-flight requests); retry after the Retry-After header's seconds"))}


def create_app(backend, method: str, *, config: ServeConfig | None = None, cache: OutputCache | None = None,
               method_options: dict | None = None) -> FastAPI:
    """A rerank service for ``method`` over ``backend`` (any engine), with ``config``'s limits.

    ``cache``: an OutputCache shared with the CLI (hits skip the batch queue), or None.
    """
    config = config or ServeConfig()
    metrics = ServeMetrics()
    metrics.report_settings({k: v for k, v in asdict(config).items() if isinstance(v, (int, float))
                             and not isinstance(v, bool)})
    batcher = BatchingBackend(backend, config.batch_wait_ms, config.max_batch_prompts, metrics.observe_batch,
                              chunk_prompts=config.chunk_prompts)
    served = CachedBackend(batcher, cache, model_key=getattr(backend, "cache_key", backend.name)) if cache is not None else batcher
    try:
        reranker = load_reranker(method, backend.name, backend=served, **(method_options or {}))
    except Exception:
        batcher.close()
        raise

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await anyio.to_thread.run_sync(batcher.close)  # uvicorn has let in-flight requests finish

    app = FastAPI(title="rankwise rerank service", lifespan=lifespan,
                  description=f"Reranks documents for a query with `{method}` on `{backend.name}`. "
                              "Request and response follow the common `/v1/rerank` shape (Cohere, Jina, TEI); "
                              "`/rerank` and `/v2/rerank` are aliases.")
    app.state.batcher = batcher
    install_error_handlers(app)

    def run(query: str, texts: list[str], deadline: float, stop: threading.Event) -> Ranking:
        request = Request(Query("request", query), tuple(Candidate(str(i), t) for i, t in enumerate(texts)))
        with batcher.request_scope(deadline, stop):
            return run_stage(reranker, [request]).rankings["request"]

    async def rerank(body: RerankRequest, http: HttpRequest) -> RerankResponse:
        texts, truncated = truncate_documents(backend, document_texts(body, config), body.max_tokens_per_doc)
        deadline = time.perf_counter() + config.request_timeout
        try:
            ranking = await _run_watched(lambda stop: run(body.query, texts, deadline, stop), http,
                                         config.request_timeout)
        except RequestTimeout:
            metrics.stopped.labels("timeout").inc()
            raise ApiError(408, f"the request took longer than the limit of {config.request_timeout:g} s") from None
        except RequestCancelled:
            metrics.stopped.labels("disconnected").inc()
            raise ApiError(499, "the client closed the connection before the answer") from None
        metrics.observe_rerank(len(texts), ranking.usage)
        results = []
        for candidate, score in list(ranking)[:body.top_n]:
            index = int(candidate.docid)
            document = DocumentOut(text=body.documents[index].text) if body.return_documents else None
            results.append(RerankResult(index=index, relevance_score=score, document=document))
        return RerankResponse(id=uuid.uuid4().hex, model=backend.name, results=results,
                              usage=_usage(ranking.usage).model_copy(update={"truncated_documents": truncated}),
                              meta=cohere_meta(ranking.usage.prompt_tokens, ranking.usage.completion_tokens,
                                               truncated, body.max_tokens_per_doc))

    # TEI /rerank (by the body), vLLM /score; before the routes below
    add_shape_routes(app, rerank, probabilities=method in PROBABILITY_METHODS)
    for i, path in enumerate(RERANK_PATHS):
        if path in SHAPE_PATHS:
            continue
        app.add_api_route(path, rerank, methods=["POST"], response_model=RerankResponse,
                          response_model_exclude_none=True, responses=_ERRORS, include_in_schema=i == 0,
                          summary="Rerank documents for a query", operation_id=f"rerank_{i}")

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", model=backend.name, method=method, engine=backend.engine, dtype=backend.dtype)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {metrics.content_type: {}}}})
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    protected = frozenset(RERANK_PATHS + SHAPE_PATHS + ("/metrics",))
    app.add_middleware(RequestGuard, max_body_bytes=config.max_body_bytes, api_key=config.api_key,
                       protected=protected, json_paths=frozenset(RERANK_PATHS + SHAPE_PATHS),
                       body_timeout=config.body_timeout)
    app.add_middleware(AdmissionLimit, max_in_flight=config.max_in_flight,
                       paths=frozenset(RERANK_PATHS + SHAPE_PATHS))
    app.add_middleware(MetricsMiddleware, metrics=metrics, paths=protected | {"/health"})
    if config.api_key is not None:
        _document_bearer_auth(app, protected)
    return app


async def _run_watched(work: Callable[[threading.Event], Ranking], http: HttpRequest, timeout: float) -> Ranking:
    """``work(stop)`` in a worker thread. Past ``timeout`` raises RequestTimeout, a client that goes away
    RequestCancelled; either way ``stop`` is set, so the batcher drops the work's remaining chunks."""
    stop = threading.Event()
    outcome: list = []  # the ranking or the error work raised; empty if the client went away
    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_cancel_on_disconnect, http, tasks.cancel_scope)
                try:
                    outcome.append(await anyio.to_thread.run_sync(work, stop, abandon_on_cancel=True))
                except Exception as exc:  # noqa: BLE001 - re-raised below, not inside an ExceptionGroup
                    outcome.append(exc)
                tasks.cancel_scope.cancel()
    except TimeoutError:
        raise RequestTimeout() from None
    finally:
        stop.set()
    if not outcome:
        raise RequestCancelled()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


async def _cancel_on_disconnect(http: HttpRequest, scope: CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (the body has been read: the next message is the end)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _usage(u: Usage) -> RerankUsage:
    return RerankUsage(prompt_tokens=u.prompt_tokens, total_tokens=u.prompt_tokens + u.completion_tokens,
                       computed_tokens=u.computed_tokens, prompts=u.calls, cache_hits=u.cache_hits,
                       forward_passes=u.forward_passes, model_seconds=round(u.seconds, 4),
                       comparisons=u.comparisons, inconsistent_comparisons=u.inconsistent)


def _document_bearer_auth(app: FastAPI, protected: frozenset[str]) -> None:
    """Show the bearer-token requirement in the OpenAPI document (RequestGuard enforces it)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path in protected:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
