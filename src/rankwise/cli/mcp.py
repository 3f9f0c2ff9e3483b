"""``rankwise mcp``: an MCP server over stdio with ``rerank`` and ``methods`` tools (pip install mcp)."""

from __future__ import annotations

import typer

from rankwise.cli.app import app
from rankwise.errors import InputError


@app.command("mcp")
def mcp_command(
    model: str = typer.Option(..., help="Model name, local GGUF/dir, or hub id (rankwise models list)."),
    method: str = typer.Option("pointwise.yes_no", help="Method name (rankwise methods list)."),
    engine: str = typer.Option("auto", help="auto|transformers|seq2seq|llamacpp|openai|vllm"),
    dtype: str = typer.Option("auto", help="auto|float32|bfloat16|float16 (auto: bf16 only where native)."),
) -> None:
    """Serve a reranker to agents over MCP (stdio): tools `rerank` (query, documents, top_n) and `methods`."""
    try:
        import mcp  # noqa: F401
    except ImportError:  # pragma: no cover - only without the extra
        raise InputError("rankwise mcp needs the MCP SDK: pip install 'rankwise[mcp]'") from None
    from rankwise.mcp_server import build_server
    from rankwise.pipeline import load_reranker

    reranker = load_reranker(method, model, engine=engine, dtype=dtype)
    build_server(reranker, f"{method} on {model}").run("stdio")
