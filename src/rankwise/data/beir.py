"""BEIR directories: corpus.jsonl[.gz], queries.jsonl[.gz], qrels/<split>.tsv."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rankwise.data._io import iter_lines
from rankwise.data.trec import Qrels, read_qrels, read_topics
from rankwise.errors import InputError
from rankwise.types import Document


@dataclass
class BeirData:
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: Qrels


def find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def is_beir_dir(directory: Path) -> bool:
    return find_file(directory, "corpus.jsonl") is not None and find_file(directory, "queries.jsonl") is not None


def read_corpus(path: str | Path) -> dict[str, Document]:
    """Read a BEIR corpus (JSONL of ``{"_id", "text", "title"?}``)."""
    p = Path(path)
    corpus: dict[str, Document] = {}
    for n, line in iter_lines(p):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"invalid JSON: {err.msg} (column {err.colno})", p, n) from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", p, n)
        for key in ("_id", "text"):
            if key not in obj:
                raise InputError(f"missing '{key}'", p, n)
        docid = str(obj["_id"])
        if docid in corpus:
            raise InputError(f"duplicate document id {docid}", p, n)
        text, title = obj["text"], obj.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise InputError("'text' and 'title' must be strings", p, n)
        corpus[docid] = Document(docid, text, title)
    if not corpus:
        raise InputError("empty corpus file", p)
    return corpus


def load_beir(directory: str | Path, split: str = "test") -> BeirData:
    """Load a BEIR directory; keep only the queries judged in ``split``."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError("no such directory", d)
    corpus_file, queries_file = find_file(d, "corpus.jsonl"), find_file(d, "queries.jsonl")
    if corpus_file is None or queries_file is None:
        raise InputError("not a BEIR directory: needs corpus.jsonl[.gz] and queries.jsonl[.gz]", d)
    qrels_file = find_file(d / "qrels", f"{split}.tsv")
    if qrels_file is None:
        found = sorted(f.name.split(".")[0] for f in (d / "qrels").glob("*.tsv*"))
        raise InputError(f"no qrels for split {split!r} (found: {', '.join(found) or 'none'})", d / "qrels")
    qrels = read_qrels(qrels_file)
    all_queries = read_topics(queries_file)
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        raise InputError(f"{len(missing)} judged queries have no text in {queries_file.name}, "
                         f"e.g. {missing[0]}", qrels_file)
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return BeirData(read_corpus(corpus_file), queries, qrels)
