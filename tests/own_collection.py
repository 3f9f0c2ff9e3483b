"""Small collections rankwise does not ship, built in a test's tmp_path: a RankGPT-format candidates file with
its qrels, and a TREC-style folder whose two runs list the queries in different orders."""

from __future__ import annotations

import json
from pathlib import Path

from rankwise.types import Candidate, Query, Request

QUERIES = {"3": "what do cats eat", "10": "how fast do dogs run", "2": "why is the sky blue", "1": "who wrote hamlet",
           "50": "an unjudged query"}
"""In file order (not qid order); 50 has no judgments."""
MISSING = "99"
"""A judged query that no candidates file holds (as when the qrels cover more topics than the run)."""


def passage(docid: str) -> str:
    return f"Passage {docid} text."


def requests(order: list[str] | None = None, shift: int = 0) -> list[Request]:
    """Five candidates per query, in the first stage's order; ``shift`` rotates them (another first stage)."""
    out = []
    for qid in order or list(QUERIES):
        docids = [f"{qid}-d{i}" for i in range(5)]
        docids = docids[shift:] + docids[:shift]
        out.append(Request(Query(qid, QUERIES[qid]), tuple(Candidate(d, passage(d), score=10.0 - i)
                                                           for i, d in enumerate(docids))))
    return out


def qrels() -> dict[str, dict[str, int]]:
    """The 4th and 5th candidates relevant (first stage imperfect), and a judged query no run holds."""
    judged = {qid: {f"{qid}-d3": 2, f"{qid}-d4": 1, f"{qid}-d0": 0} for qid in QUERIES if qid != "50"}
    judged[MISSING] = {f"{MISSING}-d0": 1}
    return judged


def write_qrels(path: Path) -> Path:
    path.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels().items() for d, g in docs.items()))
    return path


def rankgpt_collection(root: Path) -> tuple[Path, Path]:
    """``candidates.json`` (RankGPT/rank_llm: a list of {query, hits}) and ``qrels.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    data = [{"query": r.query.text, "hits": [{"qid": r.query.qid, "docid": c.docid, "content": c.text,
                                               "score": c.score, "rank": i} for i, c in enumerate(r.candidates, 1)]}
            for r in requests()]
    (root / "candidates.json").write_text(json.dumps(data, indent=1))
    return root / "candidates.json", write_qrels(root / "qrels.txt")


def write_run(path: Path, reqs: list[Request]) -> Path:
    path.write_text("".join(f"{r.query.qid} Q0 {c.docid} {i} {c.score} x\n"
                            for r in reqs for i, c in enumerate(r.candidates, 1)))
    return path


def trec_folder(root: Path) -> Path:
    """topics, qrels, the passages (a JSONL candidates file), and two runs in different query orders:
    ``run.bm25.trec`` in file order, ``run.splade.trec`` reversed with its candidates rotated."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "topics.own.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in [*QUERIES.items(), (MISSING, "x")]))
    write_qrels(root / "qrels.own.txt")
    docs = [{"qid": r.query.qid, "query": r.query.text,
             "documents": [{"docid": c.docid, "text": c.text, "score": c.score} for c in r.candidates]}
            for r in requests()]
    (root / "retrieve_results.passages.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    write_run(root / "run.bm25.trec", requests())
    write_run(root / "run.splade.trec", requests(list(reversed(QUERIES)), shift=2))
    return root

