"""Candidate files (rank_llm JSON, JSONL) and their conversions to and from runs."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from rankwise.data import (
    load_beir,
    read_candidates,
    read_run,
    requests_from_run,
    run_from_requests,
    write_candidates,
    write_candidates_jsonl,
)
from rankwise.errors import InputError
from rankwise.types import Candidate, Query, Request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
RETRIEVERS = ["bm25", "bm25_rm3", "d_bert_kd_tasb", "open_ai_ada2", "splade_p_p_ensemble_distil"]


def test_dl19_bm25_candidates(dl19: Path) -> None:
    start = time.perf_counter()
    requests = read_candidates(dl19 / "retrieve_results.bm25.top100.json.gz")
    assert time.perf_counter() - start < 1.0
    assert len(requests) == 43
    assert all(len(r.candidates) == 100 for r in requests)
    first = requests[0]
    assert first.query == Query("264014", "how long is life cycle of flea")
    assert first.candidates[0].docid == "5611210"
    assert first.candidates[0].text.startswith("5. Cancel. A flea can live up to a year")
    assert first.candidates[0].score == 15.780599594116211


@pytest.mark.parametrize("retriever", RETRIEVERS)
def test_candidates_and_trec_runs_hold_the_same_pairs(dl19: Path, dl20: Path, retriever: str) -> None:
    for folder, queries in ((dl19, 43), (dl20, 54)):
        from_json = run_from_requests(read_candidates(folder / f"retrieve_results.{retriever}.top100.json.gz"))
        from_trec = read_run(folder / f"run.{retriever}.top100.trec")
        assert len(from_json) == queries
        assert {q: set(d) for q, d in from_json.items()} == {q: set(d) for q, d in from_trec.items()}


@pytest.mark.parametrize("name", ["c.json", "c.json.gz", "c.txt", "sub/c.jsonl", "c.jsonl.gz", "lines.txt"])
def test_round_trip(scifact: Path, tmp_path: Path, name: str) -> None:
    data = load_beir(scifact)
    run = {qid: dict(list({d: float(3 - i) for i, d in enumerate(judged)}.items()))
           for qid, judged in list(data.qrels.items())[:5]}
    run["extra"] = {}
    queries = dict(data.queries, extra="a query with no candidates")
    requests = requests_from_run(run, queries, data.corpus)
    assert requests[0].candidates[0].title  # SciFact documents have titles: they must survive
    path = tmp_path / name
    writer = write_candidates_jsonl if name == "lines.txt" else write_candidates  # .jsonl: JSONL by its name
    writer(requests, path)
    assert read_candidates(path) == requests
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_rank_llm_details(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"query": "q", "hits": [
        {"qid": 7, "docid": 30, "content": "c", "rank": 3},
        {"qid": 7, "docid": "10", "content": "a", "rank": 1, "score": 5},
        {"qid": 7, "docid": "20", "content": "b", "rank": 2, "score": 4.5},
    ]}]))
    [request] = read_candidates(path)
    assert request.query == Query("7", "q")
    assert [(c.docid, c.score) for c in request.candidates] == [("10", 5.0), ("20", 4.5), ("30", 0.0)]


def test_run_from_requests_falls_back_to_rank_scores() -> None:
    q = Query("1", "q")
    zero = Request(q, (Candidate("a", "x"), Candidate("b", "y"), Candidate("c", "z")))
    assert run_from_requests([zero]) == {"1": {"a": 3.0, "b": 2.0, "c": 1.0}}
    rising = Request(Query("2", "q"), (Candidate("a", "x", 1.0), Candidate("b", "y", 2.0)))
    assert list(run_from_requests([rising])["2"].items()) == [("a", 2.0), ("b", 1.0)]
    kept = Request(Query("3", "q"), (Candidate("a", "x", 2.0), Candidate("b", "y", 2.0), Candidate("c", "", -1.0)))
    assert run_from_requests([kept])["3"] == {"a": 2.0, "b": 2.0, "c": -1.0}
    with pytest.raises(InputError, match="duplicate query 3"):
        run_from_requests([kept, kept])


def test_requests_from_run(dl19: Path, scifact: Path) -> None:
    data = load_beir(scifact)
    run = {"1": {"31715818": 2.0, "4983": 1.0}}
    [request] = requests_from_run(run, data.queries, data.corpus, top_k=1)
    assert [c.docid for c in request.candidates] == ["31715818"]
    assert request.candidates[0].score == 2.0 and request.candidates[0].title
    with pytest.raises(InputError, match=r"no text for document nope \(query 1\)"):
        requests_from_run({"1": {"nope": 1.0}}, data.queries, data.corpus)
    with pytest.raises(InputError, match="no text for query 999999"):
        requests_from_run({"999999": {"4983": 1.0}}, data.queries, data.corpus)


@pytest.mark.parametrize("name, expected", [
    ("candidates_bad.json", ":7: invalid JSON: Expecting value (column 5)"),
    ("candidates_missing_docid.json", ": query 2, hit 2: missing 'docid'"),
    ("candidates_missing_text.jsonl", ":2: query 2, document 2: missing 'text'"),
])
def test_malformed_candidates(name: str, expected: str) -> None:
    with pytest.raises(InputError) as err:
        read_candidates(FIXTURES / name)
    assert str(err.value) == f"{FIXTURES / name}{expected}"


def test_candidates_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="c.json: no such file$"):
        read_candidates(tmp_path / "c.json")
    for name in ("e.json", "e.jsonl", "e.txt"):
        (tmp_path / name).write_text("\n")
        with pytest.raises(InputError, match=f"{name}: empty file$"):
            read_candidates(tmp_path / name)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(b'[\n {"query": "q",\n  "hits": [{"qid": 1, "docid": "D", "content": "\xff"}]}]'))
    with pytest.raises(InputError, match=r"bad.json.gz:3: not valid UTF-8 \(byte 0xff at column 49\)"):
        read_candidates(bad)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"qid": 1, "query": "q", "documents": [{"docid": "D", "text": "a"}, {"docid": "D", "text": "b"}]}\n')
    with pytest.raises(InputError, match="dup.jsonl:1: query 1: duplicate docid D for query 1"):
        read_candidates(dup)
    other = tmp_path / "other.txt"
    other.write_text("1 Q0 D 1 1.0 t\n")
    with pytest.raises(InputError, match="not a candidates file"):
        read_candidates(other)
    not_list = tmp_path / "obj.json"
    not_list.write_text('{"query": "q"}')
    with pytest.raises(InputError, match="obj.json: expected a JSON list"):
        read_candidates(not_list)
