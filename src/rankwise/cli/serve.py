"""``rankwise serve``: the rerank HTTP service (FastAPI + uvicorn) for any method and model."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.errors import InputError

err = Console(stderr=True)


def check_port_free(host: str, port: int) -> None:
    """Fail at once, before any model loads, when ``host:port`` cannot be listened on."""
    if port == 0:
        return
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port, "
                         "or 0 for any free one") from None


@app.command()
def serve(
    model: str = typer.Option(..., help="Model name, local GGUF/dir, or hub id (rankwise models list)."),
    method: str = typer.Option(..., help="Method name (rankwise methods list)."),
    engine: str = typer.Option("auto", help="auto|transformers|seq2seq|llamacpp|openai|vllm"),
    dtype: str = typer.Option("auto", help="auto|float32|bfloat16|float16 (auto: bf16 only where native)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on (0: any free port, printed at start)."),
    api_key: Optional[str] = typer.Option(None, envvar="RANKWISE_API_KEY", show_default=False,
                                          help="Require 'Authorization: Bearer KEY' on the rerank and score "
                                               "routes and /metrics."),
    max_documents: int = typer.Option(1000, help="Most documents per request."),
    max_document_chars: int = typer.Option(20_000, help="Most characters per document (see --long-documents)."),
    long_documents: str = typer.Option("truncate", help="truncate: cut longer documents (then the method's "
                                                        "token budget applies); reject: answer 422."),
    max_query_chars: int = typer.Option(2_000, help="Most characters in the query (longer: 422)."),
    max_body_bytes: int = typer.Option(2 * 1024 * 1024, help="Largest request body (larger: 413, unread)."),
    request_timeout: float = typer.Option(60.0, help="Seconds a request may take (longer: 408)."),
    batch_wait_ms: float = typer.Option(5.0, help="How long the batcher waits for other requests to join."),
    max_batch_prompts: int = typer.Option(128, help="Prompts merged into one backend call at most."),
    chunk_prompts: int = typer.Option(16, help="A request's prompts go to the model this many at a time: other "
                                               "requests run in between; a timed-out or disconnected request "
                                               "stops at the next chunk."),
    max_in_flight: int = typer.Option(8, help="Rerank requests computed or queued at once (more: 429 with "
                                               "Retry-After)."),
    header_timeout: float = typer.Option(10.0, help="Seconds for a request's headers to arrive (else 408, closed)."),
    body_timeout: float = typer.Option(30.0, help="Seconds for a request's body to arrive (else 408, closed)."),
    keep_alive_timeout: float = typer.Option(5.0, help="Seconds an idle keep-alive connection stays open."),
    batch_size: int = typer.Option(16, help="Prompts per forward pass (transformers engine)."),
    prompt: Optional[str] = typer.Option(None, help="Prompt template name or YAML file."),
    guard: bool = typer.Option(False, "--guard", help="Demote documents that instruct the ranker or hold chat "
                                                      "control tokens (rankwise.methods.guard)."),
    max_passage_tokens: Optional[int] = typer.Option(None, help="Truncate each document to this many tokens."),
    cache: Optional[Path] = typer.Option(None, help="SQLite cache file, shared with the CLI "
                                                    "(default: ~/.cache/rankwise)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Compute everything, store nothing."),
    base_url: Optional[str] = typer.Option(None, help="--engine openai: the server's /v1 URL."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical|error|warning|info|debug."),
) -> None:
    """Serve a reranker over HTTP: POST /v1/rerank (Cohere/Jina; /rerank also takes TEI's body), POST /score
    (vLLM), GET /health, GET /metrics, docs at /docs (docs/interop.md)."""
    from rankwise.methods.registry import method_info

    method_info(method)  # an unknown name fails before anything heavy is imported or any model loads
    check_port_free(host, port)  # so does a busy port
    import uvicorn

    from rankwise.llm import load_backend
    from rankwise.llm.cache import open_cache
    from rankwise.serve import ServeConfig, create_app
    from rankwise.serve.slow_clients import uvicorn_settings

    config = ServeConfig(max_documents=max_documents, max_document_chars=max_document_chars,
                         long_documents=long_documents, max_query_chars=max_query_chars,
                         max_body_bytes=max_body_bytes, request_timeout=request_timeout, api_key=api_key,
                         batch_wait_ms=batch_wait_ms, max_batch_prompts=max_batch_prompts,
                         chunk_prompts=chunk_prompts, max_in_flight=max_in_flight, header_timeout=header_timeout,
                         body_timeout=body_timeout, keep_alive_timeout=keep_alive_timeout)
    options: dict = {"batch_size": batch_size}
    if base_url:
        options["base_url"] = base_url
    backend = load_backend(model, engine=engine, dtype=dtype, cache=False, **options)
    method_opts = {}
    if prompt:
        method_opts["prompt"] = prompt
    if max_passage_tokens:
        method_opts["max_passage_tokens"] = max_passage_tokens
    if guard:
        method_opts["guard"] = True
    store = None if no_cache else open_cache(cache or True)
    service = create_app(backend, method, config=config, cache=store, method_options=method_opts)
    err.print(f"[bold]{method}[/] on [bold]{backend.name}[/]: engine={backend.engine} dtype={backend.dtype}, "
              f"cache={'off' if store is None else store.path}, auth={'on' if api_key else 'off'}")
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host} without --api-key: anyone who reaches the port can "
                  "use the model")
    # uvicorn stops accepting on SIGINT/SIGTERM and lets in-flight requests finish (each within the timeout).
    uvicorn.run(service, host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=math.ceil(request_timeout) + 5, **uvicorn_settings(config))
