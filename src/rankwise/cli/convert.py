"""``rankwise convert``: between the formats rankwise reads and writes (TREC run, rank_llm/RankGPT JSON, JSONL).

The output's format follows its name: ``.json[.gz]`` RankGPT JSON (``{"query", "hits"}``), ``.jsonl[.gz]``
JSON lines, anything else a TREC run (of the candidates' own order: the first stage, ready for ``rankwise
evaluate``); ``--format`` names it instead (``rank-llm``: rank_llm's current ``{"query": {...},
"candidates"}`` Requests, a JSON list, or JSON lines when the name ends in .jsonl). A TREC run becomes
candidates with the query texts (``--topics``) and document texts (``--corpus``) or a ``--dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from rankwise.cli.app import app
from rankwise.cli.outputs import Outputs
from rankwise.data.dataset import CANDIDATE_SUFFIXES
from rankwise.errors import InputError
from rankwise.types import Document, Request

err = Console(stderr=True, soft_wrap=True)

FORMATS = ("auto", "trec", "rankgpt", "rank-llm", "jsonl")


@app.command()
def convert(
    source: Path = typer.Argument(..., help="A candidates file (rank_llm JSON[.gz] or JSONL) or a TREC run."),
    output: Path = typer.Argument(..., help="What to write: .json (rank_llm), .jsonl, or a TREC run "
                                            "(any other name)."),
    topics: Optional[Path] = typer.Option(None, help="A TREC run's query texts: TSV qid<TAB>text, or JSONL."),
    corpus: Optional[Path] = typer.Option(None, help="A TREC run's document texts: BEIR corpus JSONL "
                                                     "(_id, text, title) or TSV docid<TAB>text."),
    dataset: Optional[str] = typer.Option(None, help="Or: the dataset whose queries and documents the run ranks."),
    top_k: Optional[int] = typer.Option(None, min=1, help="Keep the top k candidates of each query."),
    fmt: str = typer.Option("auto", "--format", help="trec|rankgpt|rank-llm|jsonl; auto: by the output's "
                                                        "name (.json RankGPT, .jsonl JSON lines, else TREC)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Convert candidates and runs: a candidates file to a TREC run of its own order (or to the other
    candidates format), a TREC run plus texts to a candidates file."""
    from rankwise.data import run_from_requests, write_candidates, write_candidates_jsonl, write_rank_llm, write_run

    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "auto":
        fmt = "trec" if not output.name.endswith(CANDIDATE_SUFFIXES) else \
            "jsonl" if output.name.endswith((".jsonl", ".jsonl.gz")) else "rankgpt"
    outputs = Outputs(overwrite, (source, topics, corpus))
    outputs.add(output)
    requests = _read_source(source, topics, corpus, dataset)
    if top_k is not None:
        requests = [Request(r.query, r.candidates[:top_k]) for r in requests]
    writers = {"rankgpt": write_candidates, "jsonl": write_candidates_jsonl, "rank-llm": write_rank_llm}
    if fmt in writers:
        written = outputs.write(output, lambda tmp: writers[fmt](requests, tmp))
        what = f"{fmt} candidates"
    else:
        written = outputs.write(output, lambda tmp: write_run(run_from_requests(requests), tmp, tag=_tag(source)))
        what = "TREC run (the candidates' own order)"
    err.print(f"wrote {written}: {what}, {len(requests)} queries, "
              f"{sum(len(r.candidates) for r in requests)} candidates")
    outputs.finish()


def _read_source(source: Path, topics: Optional[Path], corpus: Optional[Path],
                 dataset: Optional[str]) -> list[Request]:
    """Requests from a candidates file, or from a TREC run paired with texts."""
    from rankwise.data import load_dataset, read_candidates, read_run, read_topics, requests_from_run
    from rankwise.data._io import first_char

    if source.name.endswith(CANDIDATE_SUFFIXES) or first_char(source) in ("[", "{"):
        if topics or corpus or dataset:
            raise InputError("a candidates file carries its texts: drop --topics/--corpus/--dataset", source)
        return read_candidates(source)
    run = read_run(source)
    if dataset is not None:
        ds = load_dataset(dataset)
        if ds.docs is None:
            raise InputError(f"dataset {ds.name} has no document texts")
        return requests_from_run(run, ds.queries, ds.docs)
    if topics is None or corpus is None:
        raise InputError("a TREC run needs texts to become candidates: give --topics and --corpus, or --dataset",
                         source)
    return requests_from_run(run, read_topics(topics), read_documents(corpus))


def read_documents(path: Path) -> dict[str, Document]:
    """Document texts: a BEIR corpus JSONL, or TSV lines ``docid<TAB>text[<TAB>title]``."""
    from rankwise.data import read_corpus
    from rankwise.data._io import iter_lines

    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return read_corpus(path)
    docs: dict[str, Document] = {}
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) not in (2, 3) or not cols[0].strip():
            raise InputError(f"expected docid<TAB>text[<TAB>title], got {len(cols)} columns", path, n)
        docid = cols[0].strip()
        if docid in docs:
            raise InputError(f"duplicate document id {docid}", path, n)
        docs[docid] = Document(docid, cols[1], cols[2] if len(cols) == 3 else "")
    if not docs:
        raise InputError("empty corpus file", path)
    return docs


def _tag(source: Path) -> str:
    name = source.name.split(".")[0] or "rankwise"
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
