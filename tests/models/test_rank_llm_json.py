"""rank_llm's current Request/Result JSON: read (golden file in the shape of rank_llm.data), rerank through
the CLI, write a Result, read it back with the same ranking; errors name the query, candidate and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.data import read_candidates, read_run, write_candidates, write_rank_llm
from rankwise.errors import InputError
from rankwise.types import Candidate, Query, Ranking, Request

from tiny_lm import save_tiny_model

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "rank_llm" / "request.json"


def test_the_golden_rank_llm_request_file_reads_as_requests():
    requests = read_candidates(GOLDEN)
    assert [r.query for r in requests] == [Query("264014", "how long is life cycle of flea"),
                                          Query("1037798", "what is the capital of france")]
    first = requests[0].candidates[0]
    assert first == Candidate("4834547", "The life cycle of a flea can last anywhere from 20 days to an entire "
                                         "year.", 14.971799850463867, "Flea life cycle")
    assert [c.docid for c in requests[1].candidates] == ["7", "11"]  # integer ids, file order kept
    assert requests[1].candidates[1].text == "Paris is the capital and largest city of France."


def test_request_files_round_trip_as_json_and_json_lines(tmp_path):
    requests = read_candidates(GOLDEN)
    for name in ("again.json", "again.jsonl", "again.jsonl.gz"):
        write_rank_llm(requests, tmp_path / name)
        assert read_candidates(tmp_path / name) == requests
    line = json.loads((tmp_path / "again.jsonl").read_text().splitlines()[0])
    assert set(line) == {"query", "candidates"} and set(line["query"]) == {"text", "qid"}
    assert set(line["candidates"][0]) == {"docid", "score", "doc"}
    assert line["candidates"][0]["doc"] == {"contents": requests[0].candidates[0].text, "title": "Flea life cycle"}


def test_rank_llm_request_reranks_to_a_result_that_reads_back_equal(tmp_path):
    model = tmp_path / "tiny-llama"
    save_tiny_model(model)
    trec, result_file = tmp_path / "out.trec", tmp_path / "result.json"
    from rankwise.cli import main

    main(["rerank", "--method", "pointwise.yes_no", "--model", str(model), "--engine", "transformers",
          "--dtype", "float32", "--top-k", "3", "--candidates", str(GOLDEN), "--output", str(trec),
          "--rank-llm", str(result_file), "--no-cache"])
    written = json.loads(result_file.read_text())
    assert [set(item) for item in written] == [{"query", "candidates"}] * 2  # rank_llm's DataWriter fields
    back = read_candidates(result_file)
    run = read_run(trec)
    for request in back:
        assert [c.docid for c in request.candidates] == list(run[request.query.qid])
        scores = [c.score for c in request.candidates]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)  # P(yes)
    original = {r.query.qid: r for r in read_candidates(GOLDEN)}
    for request in back:  # the same documents, texts and titles, in the new order
        assert {c.docid: (c.text, c.title) for c in request.candidates} == \
            {c.docid: (c.text, c.title) for c in original[request.query.qid].candidates}


def test_a_ranking_is_written_with_its_own_scores_in_its_order(tmp_path):
    query, docs = Query("q1", "bees"), (Candidate("a", "x", 9.0), Candidate("b", "y", 8.0))
    write_rank_llm([Ranking(query, docs[::-1], (0.9, 0.1))], tmp_path / "r.json")
    assert read_candidates(tmp_path / "r.json") == [Request(query, (Candidate("b", "y", 0.9),
                                                                    Candidate("a", "x", 0.1)))]


def test_the_rankgpt_shape_still_reads(tmp_path):
    requests = read_candidates(GOLDEN)
    write_candidates(requests, tmp_path / "hits.json")
    assert '"hits"' in (tmp_path / "hits.json").read_text()
    assert read_candidates(tmp_path / "hits.json") == requests


@pytest.mark.parametrize("candidate, message", [
    ({"docid": "d", "score": 1.0, "doc": {"title": "only"}}, "query 1, candidate 1: 'doc' needs a text field"),
    ({"docid": True, "score": 1.0, "doc": {"text": "t"}}, "query 1, candidate 1: 'docid' must be a string"),
    ({"docid": "d", "score": "high", "doc": {"text": "t"}}, "query 1, candidate 1: 'score' must be a number"),
])
def test_a_bad_candidate_names_the_query_candidate_and_field(tmp_path, candidate, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"query": {"text": "q", "qid": "1"}, "candidates": [candidate]}]))
    with pytest.raises(InputError, match=f"bad.json: {message}"):
        read_candidates(path)
    lines = tmp_path / "bad.jsonl"
    lines.write_text("\n" + json.dumps({"query": {"text": "q", "qid": "1"}, "candidates": [candidate]}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: query, candidate 1"):
        read_candidates(lines)


def test_rank_llm_itself_reads_our_results_and_writes_what_we_read(tmp_path):
    """With the real rank_llm package (pip install --no-deps rank-llm dacite: its data module needs no more)."""
    data = pytest.importorskip("rank_llm.data",
                               reason="rank_llm is not installed (pip install --no-deps rank-llm dacite)")
    from dacite import from_dict

    ours = read_candidates(GOLDEN)
    theirs = data.read_requests_from_file(str(GOLDEN))  # the golden file is rank_llm's own shape
    assert [(str(r.query.qid), r.query.text, [str(c.docid) for c in r.candidates]) for r in theirs] == \
        [(r.query.qid, r.query.text, [c.docid for c in r.candidates]) for r in ours]
    rankings = [Ranking(r.query, r.candidates[::-1], tuple(float(i) for i in range(len(r.candidates), 0, -1)))
                for r in ours]
    write_rank_llm(rankings, tmp_path / "ours.jsonl")
    results = [from_dict(data_class=data.Result, data=json.loads(line))
               for line in (tmp_path / "ours.jsonl").read_text().splitlines()]
    assert [[c.docid for c in r.candidates] for r in results] == [[c.docid for c in r.candidates] for r in rankings]
    data.DataWriter(results).write_in_json_format(str(tmp_path / "theirs.json"))
    back = read_candidates(tmp_path / "theirs.json")
    assert [(r.query, [(c.docid, c.text, c.title, c.score) for c in r.candidates]) for r in back] == \
        [(r.query, [(c.docid, c.text, c.title, s) for c, s in r]) for r in rankings]
