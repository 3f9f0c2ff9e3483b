"""The other rerank-serving shapes, on the same app and the same reranker as ``/v1/rerank``:

- TEI ``POST /rerank``: ``{"query", "texts", "raw_scores", "return_text", "truncate"}`` -> a bare list
  ``[{"index", "score", "text"?}]``, most relevant first. Detected from the body (``texts``); any other body on
  ``/rerank`` is the Cohere/Jina shape.
- vLLM ``POST /score`` and ``/v1/score``: ``{"model", "text_1", "text_2", "truncate_prompt_tokens"?}`` (1:1, 1:N
  or N:N pairs) -> ``{"id", "object": "list", "created", "model", "data": [{"index", "object": "score",
  "score"}], "usage"}``, in input order.
- Cohere v2 ``max_tokens_per_doc`` (also vLLM's rerank): each document cut to that many tokens with the
  engine's tokenizer before the method sees it; ``usage.truncated_documents`` and ``meta.warnings`` say how
  many were cut, and ``meta`` carries Cohere v2's ``api_version`` and ``tokens``.

Every shape is translated to a ``RerankRequest``, answered by the app's one rerank handler (limits, timeouts,
batching, the one run loop) and translated back; an error names the field in the caller's shape.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.responses import JSONResponse

from rankwise.serve.errors import ApiError
from rankwise.serve.schemas import RerankRequest, RerankResponse

SHAPE_PATHS = ("/rerank", "/score", "/v1/score")
Rerank = Callable[[RerankRequest, Request], Awaitable[RerankResponse]]  # a request and its HTTP request


PROBABILITY_METHODS = frozenset({"pointwise.yes_no"})
"""Methods whose scores are probabilities, P(relevant) = sigmoid(log-odds): TEI's ``raw_scores`` gives their
log-odds, as TEI gives a cross-encoder's logit instead of its sigmoid."""


class TeiRerankRequest(BaseModel):
    """Text Embeddings Inference's ``/rerank`` body. ``raw_scores``: the log-odds log(p / (1 - p)) where the
    method's scores are probabilities (``PROBABILITY_METHODS``; TEI's logit before the sigmoid), the method's
    own scores otherwise; documents are always cut to the method's token budget (``truncate`` accepted, no
    error for a long input), from the end (``truncation_direction`` accepted)."""

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: Optional[StrictBool] = None
    truncation_direction: Optional[StrictStr] = None


class TeiRank(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class ScoreRequest(BaseModel):
    """vLLM's ``/score`` body: ``text_1`` the query (or one per pair), ``text_2`` the document(s)."""

    model: Optional[StrictStr] = None
    text_1: Union[StrictStr, list[StrictStr]]
    text_2: Union[StrictStr, list[StrictStr]]
    truncate_prompt_tokens: Optional[StrictInt] = Field(None, ge=1, description="Cut each text_2 document to "
                                                                                "this many tokens.")


class ScoreData(BaseModel):
    index: int
    object: str = "score"
    score: float


class ScoreUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: Optional[dict] = None


class ScoreResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: ScoreUsage


def truncate_documents(backend, texts: list[str], max_tokens: int | None) -> tuple[list[str], int]:
    """Each text cut to ``max_tokens`` tokens of ``backend``'s tokenizer; also how many were cut."""
    if max_tokens is None:
        return texts, 0
    cut = [backend.truncate(t, max_tokens) for t in texts]
    return cut, sum(a != b for a, b in zip(texts, cut))


def cohere_meta(prompt_tokens: int, completion_tokens: int, truncated: int, max_tokens: int | None) -> dict:
    """Cohere v2's ``meta``: the API version, the tokens, and a warning when documents were truncated."""
    meta: dict = {"api_version": {"version": "2"},
                  "tokens": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}}
    if truncated:
        meta["warnings"] = [f"{truncated} document{'s' if truncated > 1 else ''} truncated to "
                            f"max_tokens_per_doc={max_tokens} tokens"]
    return meta


@contextmanager
def _fields_named(renames: dict[str, str]) -> Iterator[None]:
    """Errors of the rerank handler name the caller's fields (``documents[2]`` -> ``texts[2]``)."""
    try:
        yield
    except ApiError as err:
        for ours, theirs in renames.items():
            if err.field and err.field.startswith(ours):
                err.field = theirs + err.field[len(ours):]
                err.message = err.message.replace(ours, theirs, 1)
                break
        raise


def _validated(model: type[BaseModel], body: object) -> BaseModel:
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise RequestValidationError([e | {"loc": ("body", *e["loc"])} for e in err.errors()]) from None


def log_odds(scores: list[float]) -> list[float] | None:
    """log(p / (1 - p)) of each score when all are probabilities (in [0, 1]; kept finite), else None."""
    if not all(0.0 <= s <= 1.0 for s in scores):
        return None  # e.g. guard's demoted candidates score below 0: not probabilities
    eps = 1e-12
    return [math.log(min(max(s, eps), 1 - eps)) - math.log1p(-min(max(s, eps), 1 - eps)) for s in scores]


async def _tei(rerank: Rerank, body: TeiRerankRequest, http: Request, probabilities: bool) -> list[TeiRank]:
    with _fields_named({"documents": "texts"}):
        answer = await rerank(RerankRequest(query=body.query, documents=body.texts, return_documents=body.return_text),
                              http)
    scores = [r.relevance_score for r in answer.results]
    if body.raw_scores and probabilities:
        scores = log_odds(scores) or scores
    return [TeiRank(index=r.index, score=score, text=r.document.text if r.document else None)
            for r, score in zip(answer.results, scores)]


def _pairs(body: ScoreRequest) -> list[tuple[str, list[int]]]:
    """(query, indices of text_2) groups: 1:1, 1:N, or N:N zipped pairs (grouped by query, order kept)."""
    docs = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    if isinstance(body.text_1, str):
        return [(body.text_1, list(range(len(docs))))]
    if len(body.text_1) != len(docs):
        raise ApiError(422, f"text_1: {len(body.text_1)} queries for {len(docs)} text_2 documents; give one "
                            "query, or one per document", "text_1")
    groups: dict[str, list[int]] = {}
    for i, query in enumerate(body.text_1):
        groups.setdefault(query, []).append(i)
    return list(groups.items())


async def _score(rerank: Rerank, body: ScoreRequest, http: Request) -> ScoreResponse:
    docs = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    scores: dict[int, float] = {}
    prompt_tokens, model = 0, ""
    for query, indices in _pairs(body):
        with _fields_named({"documents": "text_2", "query": "text_1"}):
            answer = await rerank(RerankRequest(query=query, documents=[docs[i] for i in indices],
                                                max_tokens_per_doc=body.truncate_prompt_tokens), http)
        scores.update({indices[r.index]: r.relevance_score for r in answer.results})
        prompt_tokens += answer.usage.prompt_tokens
        model = answer.model
    return ScoreResponse(id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=model,
                         data=[ScoreData(index=i, score=scores[i]) for i in range(len(docs))],
                         usage=ScoreUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens))


def add_shape_routes(app: FastAPI, rerank: Rerank, probabilities: bool = False) -> None:
    """``/rerank`` (TEI or Cohere/Jina, by the body), ``/score`` and ``/v1/score`` (vLLM) over ``rerank``;
    ``probabilities``: the method's scores are probabilities (TEI's ``raw_scores`` then gives log-odds)."""

    async def rerank_any(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError as err:
            raise ApiError(400, f"invalid JSON: {err.msg} (at character {err.pos})", "body") from None
        if isinstance(body, dict) and "texts" in body and "documents" not in body:
            ranks = await _tei(rerank, _validated(TeiRerankRequest, body), request, probabilities)
            return JSONResponse([r.model_dump(exclude_none=True) for r in ranks])
        answer = await rerank(_validated(RerankRequest, body), request)
        return JSONResponse(answer.model_dump(exclude_none=True))

    app.add_api_route("/rerank", rerank_any, methods=["POST"], include_in_schema=False)

    async def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        return await _score(rerank, body, request)

    for i, path in enumerate(SHAPE_PATHS[1:]):
        app.add_api_route(path, score, methods=["POST"], response_model=ScoreResponse, include_in_schema=i == 1,
                          summary="Score (query, document) pairs (vLLM's /score)", operation_id=f"score_{i}")


__all__ = ["PROBABILITY_METHODS", "SHAPE_PATHS", "ScoreRequest", "ScoreResponse", "TeiRank", "TeiRerankRequest", "add_shape_routes",
           "cohere_meta", "log_odds", "truncate_documents"]
