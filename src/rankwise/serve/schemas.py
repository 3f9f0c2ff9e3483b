"""Request and response bodies of the rerank API: the shape Cohere, Jina, Voyage, TEI and vLLM share."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class DocumentIn(BaseModel):
    """A document given as an object; fields other than ``text`` are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    text: StrictStr


def _as_document(value: Any) -> Any:
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, dict):
        return value
    raise ValueError("a document is a string or an object with a 'text' string")


Document = Annotated[DocumentIn, BeforeValidator(_as_document, json_schema_input_type=Union[str, DocumentIn])]


class RerankRequest(BaseModel):
    """Rerank ``documents`` for ``query``. Unknown fields are ignored."""

    model: Optional[StrictStr] = Field(None, description="Informational: the server reranks with the model it "
                                                         "was started with and names it in the response.")
    query: StrictStr = Field(..., description="The search query (not empty).")
    documents: list[Document] = Field(..., description="Strings, or objects with a 'text' field.")
    top_n: Optional[StrictInt] = Field(None, ge=1, description="Return only the n most relevant (all if absent).")
    return_documents: StrictBool = Field(False, description="Include each document's text in the results.")
    max_tokens_per_doc: Optional[StrictInt] = Field(None, ge=1, description="Cut each document to this many "
                                                    "tokens (Cohere v2, vLLM); usage says how many were cut.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": "what is the capital of France?",
        "documents": ["Paris is the capital of France.", "Bread rises because of yeast."],
        "top_n": 1, "return_documents": True}]})


class DocumentOut(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int = Field(..., description="Position of the document in the request.")
    relevance_score: float = Field(..., description="The method's score (pointwise.yes_no: P(Yes), in [0, 1]); "
                                                    "higher is more relevant.")
    document: Optional[DocumentOut] = Field(None, description="Only with return_documents.")


class RerankUsage(BaseModel):
    """What the request cost. Tokens of calls merged with other requests are shared out by prompts."""

    prompt_tokens: int
    total_tokens: int
    computed_tokens: int = Field(..., description="Tokens run through the model after prefix reuse and cache hits.")
    prompts: int = Field(..., description="Prompts the method sent to the model (cache hits included).")
    cache_hits: int
    forward_passes: int = Field(..., description="Forward passes this request took part in.")
    model_seconds: float
    comparisons: int = Field(0, description="Pairwise methods: passage pairs asked in both orders.")
    inconsistent_comparisons: int = Field(0, description="Of those, the pairs whose two orders did not pick the "
                                                         "same passage (position bias, or no preference).")
    truncated_documents: int = Field(0, description="Documents cut to max_tokens_per_doc.")


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(..., description="Sorted by relevance, most relevant first.")
    usage: RerankUsage
    meta: Optional[dict] = Field(None, description="Cohere v2's meta: api_version, tokens, warnings.")


class ErrorBody(BaseModel):
    message: str
    field: Optional[str] = Field(None, description="The offending field, e.g. 'documents[3].text', 'body'.")
    type: str
    param: Optional[str] = Field(None, description="The same as field (the name OpenAI-style clients read).")
    code: int = Field(..., description="The HTTP status.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    model: str
    method: str
    engine: str
    dtype: str
