"""`rankwise mcp` answered through the real MCP Python client over stdio (a tiny random model)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'rankwise[mcp]')")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from rankwise.pipeline import load_reranker  # noqa: E402
from rankwise.mcp_server import rerank_documents  # noqa: E402
from tests.tiny_lm import save_tiny_model  # noqa: E402

QUERY = "what is the capital of France?"
DOCS = ["Bread rises because of yeast.", "Paris is the capital of France.", "Lyon is in France."]
SRC = str(Path(__file__).resolve().parents[2] / "src")


async def _session_calls(model: Path) -> tuple[list[str], dict, list[dict]]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    params = StdioServerParameters(command=sys.executable, env=env, args=[
        "-c", "from rankwise.cli import main; main()", "mcp", "--model", str(model), "--engine", "transformers",
        "--dtype", "float32"])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        ranked = await session.call_tool("rerank", {"query": QUERY, "documents": DOCS, "top_n": 2})
        methods = await session.call_tool("methods", {})
    return tools, _payload(ranked), _payload(methods)


def _payload(result):
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


@pytest.mark.slow  # a server subprocess that imports torch (15-75 s on 2 busy cores)
def test_the_rerank_tool_answers_through_a_real_mcp_client(tmp_path):
    model = tmp_path / "tiny-llama"
    save_tiny_model(model)
    tools, ranked, methods = anyio.run(_session_calls, model)
    assert set(tools) >= {"rerank", "methods"}
    direct = rerank_documents(load_reranker("pointwise.yes_no", str(model), engine="transformers",
                                            dtype="float32", cache=False), QUERY, DOCS, 2)
    assert [r["index"] for r in ranked["results"]] == [r["index"] for r in direct["results"]]
    assert [r["relevance_score"] for r in ranked["results"]] == pytest.approx(
        [r["relevance_score"] for r in direct["results"]], abs=1e-6)
    assert ranked["results"][0]["document"] == DOCS[ranked["results"][0]["index"]]
    assert ranked["usage"]["calls"] == len(DOCS)
    assert "pointwise.yes_no" in {m["name"] for m in methods}
