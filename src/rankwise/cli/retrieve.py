"""``rankwise retrieve``: the top-k documents of each query from a dataset's corpus (BM25 or dense)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.cli.outputs import Outputs
from rankwise.errors import InputError

err = Console(stderr=True)


def _dataset_files(path_or_id: str) -> tuple[Path, ...]:
    """The files of a local dataset (outputs must never replace them)."""
    from rankwise.data import resolve_local

    local = resolve_local(path_or_id)
    if local is None:
        return ()
    return tuple(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else (local,)


def _retriever(kind: str, index: Optional[Path], model: Optional[str], batch_size: int, docs, overwrite: bool):
    """A ready retriever: loaded from ``index`` when it holds one, else built (and saved there)."""
    from rankwise.retrieve import BM25Retriever, DenseRetriever, read_index_meta
    from rankwise.retrieve.dense import DEFAULT_MODEL

    if index is not None and index.is_dir() and any(index.iterdir()) and not overwrite:
        meta = read_index_meta(index)
        if meta["retriever"] != kind:
            raise InputError(f"index was built by --retriever {meta['retriever']}, not {kind}", index)
        if kind == "dense" and model is not None and model != meta["model"]:
            raise InputError(f"index was built with model {meta['model']!r}, not {model!r}", index)
        started = time.perf_counter()
        retriever = BM25Retriever.load(index) if kind == "bm25" else DenseRetriever.load(index, batch_size)
        if set(retriever.docids) != set(docs):
            raise InputError(f"index covers {len(retriever.docids):,} documents, not the dataset's "
                             f"{len(docs):,}; rebuild it with --overwrite", index)
        err.print(f"loaded {kind} index of {len(retriever.docids):,} documents from {index} "
                  f"in {time.perf_counter() - started:.1f} s")
        return retriever
    if index is not None and index.exists() and not index.is_dir():
        raise InputError("is a file, expected an index directory", index)
    retriever = BM25Retriever() if kind == "bm25" else DenseRetriever(model or DEFAULT_MODEL, batch_size)
    started = time.perf_counter()
    retriever.index(docs)
    err.print(f"indexed {len(docs):,} documents ({kind}) in {time.perf_counter() - started:.1f} s")
    if index is not None:
        retriever.save(index)
        err.print(f"saved the index to {index}")
    return retriever


@app.command()
def retrieve(
    dataset: str = typer.Option(..., help="Dataset with a corpus: BEIR directory, alias (scifact) or id."),
    retriever: str = typer.Option("bm25", help="bm25 (bm25s, Lucene BM25) or dense (sentence-transformers)."),
    top_k: int = typer.Option(100, min=1, help="Documents per query."),
    output: Path = typer.Option(..., help="TREC run to write (.gz compresses)."),
    candidates: Optional[Path] = typer.Option(None, help="Also write candidates with text (rank_llm JSON; "
                                                         ".jsonl: one query per line; .gz compresses)."),
    index: Optional[Path] = typer.Option(None, help="Index directory: loaded if it holds one, else built "
                                                    "and saved there (--overwrite rebuilds it)."),
    model: Optional[str] = typer.Option(None, help="--retriever dense: model name, local dir/.zip or hub id "
                                                   "(default minilm-l6)."),
    batch_size: int = typer.Option(64, min=1, help="--retriever dense: texts per encoding batch."),
    judged_only: bool = typer.Option(False, "--judged-only", help="Only queries that have qrels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (and rebuild --index)."),
) -> None:
    """Retrieve the top-k documents of each query from a dataset's corpus; write a run (and candidates)."""
    from rankwise.data import LazyDocs, load_dataset, write_candidates, write_run
    from rankwise.retrieve import retrieve_candidates

    if retriever not in ("bm25", "dense"):
        raise InputError(f"unknown retriever {retriever!r} (choose bm25 or dense)")
    if model is not None and retriever != "dense":
        raise InputError("--model applies to --retriever dense only")
    outputs = Outputs(overwrite, _dataset_files(dataset) + ((index,) if index is not None else ()))
    outputs.add(output)
    outputs.add(candidates)
    ds = load_dataset(dataset)
    if ds.docs is None or isinstance(ds.docs, LazyDocs):
        raise InputError(f"dataset {ds.name} has no document corpus to retrieve from"
                         + (" (its texts come only from its candidate files)" if ds.docs is not None else ""))
    queries = ds.judged_queries() if judged_only else ds.queries
    if not queries:
        raise InputError(f"dataset {ds.name} has no queries")
    engine = _retriever(retriever, index, model, batch_size, ds.docs, overwrite)
    started = time.perf_counter()
    run, requests = retrieve_candidates(engine, queries, ds.docs, top_k)
    seconds = time.perf_counter() - started
    written = outputs.write(output, lambda tmp: write_run(run, tmp, tag=f"rankwise-{retriever}"))
    lines = sum(len(docs) for docs in run.values())
    err.print(f"retrieved {len(run):,} queries (top {top_k}) in {seconds:.1f} s -> {written} ({lines:,} lines)")
    if candidates is not None:
        written = outputs.write(candidates, lambda tmp: write_candidates(requests, tmp))
        err.print(f"candidates with text -> {written}")
    outputs.finish()
