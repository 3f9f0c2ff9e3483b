"""An MCP server (``rankwise mcp``, stdio): a ``rerank`` tool (query, documents, top_n) over one loaded
reranker, and a ``methods`` tool listing the reranking methods, for agent frameworks. Needs ``pip install mcp``
(the ``mcp`` extra). Every rerank goes through :func:`rankwise.pipeline.run`."""

from __future__ import annotations

from typing import Any

from rankwise.errors import InputError
from rankwise.stage import Stage
from rankwise.types import Candidate, Query, Request


def rerank_documents(reranker: Stage, query: str, documents: list[str], top_n: int | None = None) -> dict:
    """``{"results": [{"index", "relevance_score", "document"}], "usage"}``, most relevant first."""
    from rankwise.pipeline import run

    if not query.strip():
        raise InputError("query: must not be empty")
    if not documents:
        raise InputError("documents: give at least one document")
    if top_n is not None and top_n < 1:
        raise InputError(f"top_n: must be at least 1, got {top_n}")
    request = Request(Query("mcp", query), tuple(Candidate(str(i), d) for i, d in enumerate(documents)))
    ranking = run(reranker, [request]).rankings["mcp"]
    results = [{"index": int(c.docid), "relevance_score": score, "document": c.text}
               for c, score in list(ranking)[:top_n]]
    return {"results": results, "usage": ranking.usage.to_dict()}


def method_list() -> list[dict[str, Any]]:
    """Every registered method: name, what it needs, what it does, its options."""
    from rankwise.methods.registry import method_infos

    return [{"name": m.name, "needs": m.needs, "description": m.description,
             "options": [{"name": o.name, "default": o.default, "help": o.help} for o in m.options]}
            for m in method_infos()]


def build_server(reranker: Stage, name: str):
    """An MCPServer with the ``rerank`` and ``methods`` tools over ``reranker``."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="rankwise", instructions=f"Rerank documents for a query with {name}.")

    @server.tool(description=f"Rerank documents for a query with {name}; the most relevant first, each with "
                             "its index in the input and its score.")
    def rerank(query: str, documents: list[str], top_n: int | None = None) -> dict:
        return rerank_documents(reranker, query, documents, top_n)

    @server.tool(description="The reranking methods rankwise knows, with their options.")
    def methods() -> list[dict[str, Any]]:
        return method_list()

    return server
