"""TREC runs, qrels and topics: real files, round-trips and every malformed case."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from rankwise.data import read_qrels, read_run, read_topics, write_run
from rankwise.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def test_read_run_dl19(dl19: Path) -> None:
    run = read_run(dl19 / "run.bm25.top100.trec")
    assert len(run) == 43
    assert all(len(docs) == 100 for docs in run.values())
    first = run["264014"]
    assert next(iter(first.items())) == ("5611210", 15.780599594116211)
    scores = list(first.values())
    assert scores == sorted(scores, reverse=True)


def test_read_run_sorts_by_score_and_keeps_file_order_for_ties(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q Q0 a 1 1.0 t\nq Q0 b 2 3.0 t\nq Q0 c 3 1.0 t\nq Q0 d 4 2.0 t\n\n"
                    "p Q0 a 1 -inf t\n")
    run = read_run(path)
    assert list(run) == ["q", "p"]
    assert list(run["q"].items()) == [("b", 3.0), ("d", 2.0), ("a", 1.0), ("c", 1.0)]


def test_run_round_trip_plain_and_gzip(dl19: Path, tmp_path: Path) -> None:
    run = read_run(dl19 / "run.splade_p_p_ensemble_distil.top100.trec")
    for name in ("out/nested/run.trec", "run.trec.gz"):
        path = tmp_path / name
        write_run(run, path, tag="mine")
        back = read_run(path)
        assert back == run
        assert [list(d) for d in back.values()] == [list(d) for d in run.values()]
    first = (tmp_path / "out/nested/run.trec").read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1" and first[5] == "mine"
    with gzip.open(tmp_path / "run.trec.gz", "rt") as f:
        assert f.readline().split()[:4] == first[:4]


def test_write_run_refuses_what_it_cannot_write_faithfully(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="query q is not in descending score order"):
        write_run({"q": {"a": 1.0, "b": 2.0}}, tmp_path / "r.trec")
    with pytest.raises(InputError, match="docid 'a b'"):
        write_run({"q": {"a b": 1.0}}, tmp_path / "r.trec")
    write_run({"q": {"a": 1.0, "b": 1.0}}, tmp_path / "ties.trec")
    assert list(read_run(tmp_path / "ties.trec")["q"]) == ["a", "b"]


def test_read_qrels_dl19_and_dl20(dl19: Path, dl20: Path) -> None:
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")
    assert len(qrels) == 43
    assert sum(len(j) for j in qrels.values()) == 9260
    grades = Counter(g for j in qrels.values() for g in j.values())
    assert grades == {0: 5158, 1: 1601, 2: 1804, 3: 697}
    qrels20 = read_qrels(dl20 / "qrels.dl20-passage.txt")
    assert len(qrels20) == 54 and sum(len(j) for j in qrels20.values()) == 11386


def test_read_qrels_beir_tsv_equals_trec(scifact: Path) -> None:
    beir = read_qrels(scifact / "qrels" / "test.tsv")
    assert beir == read_qrels(scifact / "qrels.test.trec")
    assert len(beir) == 300 and sum(len(j) for j in beir.values()) == 339


def test_read_qrels_gzip_tabs_and_negative_grades(tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("1\t0\tD1\t2\n1 0 D2 -1\n2 0 D1 0\n")
    assert read_qrels(path) == {"1": {"D1": 2, "D2": -1}, "2": {"D1": 0}}


def test_read_topics_tsv_and_jsonl(dl19: Path, dl20: Path, scifact: Path, tmp_path: Path) -> None:
    topics = read_topics(dl19 / "topics.dl19-passage.tsv")
    assert len(topics) == 43 and topics["156493"] == "do goldfish grow"
    assert len(read_topics(dl20 / "topics.dl20.tsv")) == 200
    jsonl = read_topics(scifact / "queries.jsonl")
    assert len(jsonl) == 300 and jsonl == read_topics(scifact / "queries.test.tsv")
    path = tmp_path / "queries.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"_id": 7, "text": "seven"}\n{"id": "8", "query": "eight"}\n')
    assert read_topics(path) == {"7": "seven", "8": "eight"}


@pytest.mark.parametrize("reader, name, expected", [
    (read_run, "run_wrong_columns.trec", "run_wrong_columns.trec:3: expected 6 columns (qid Q0 docid rank score tag), got 5"),
    (read_run, "run_bad_score.trec", "run_bad_score.trec:2: score 'high' is not a number"),
    (read_run, "run_duplicate.trec", "run_duplicate.trec:3: duplicate docid D1 for query 5"),
    (read_qrels, "qrels_wrong_columns.txt", "qrels_wrong_columns.txt:3: expected 4 columns (qid iter docid grade), got 3"),
    (read_qrels, "qrels_bad_grade.txt", "qrels_bad_grade.txt:2: grade 'x' is not an integer"),
    (read_topics, "topics_no_tab.tsv", "topics_no_tab.tsv:2: expected qid<TAB>text"),
])
def test_malformed_files_name_file_and_line(reader, name: str, expected: str) -> None:
    with pytest.raises(InputError) as err:
        reader(FIXTURES / name)
    assert str(err.value) == f"{FIXTURES / name}:{expected.split(':', 1)[1]}"
    assert err.value.line == int(expected.split(":")[1])


@pytest.mark.parametrize("reader", [read_run, read_qrels, read_topics])
def test_missing_empty_and_non_utf8_files(reader, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing.txt: no such file$"):
        reader(tmp_path / "nothing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(InputError, match=r"empty.txt: empty \w+ file$"):
        reader(empty)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"\n1 Q0 caf\xe9 2 0.5 t\n")
    with pytest.raises(InputError, match=r"latin1.txt:2: not valid UTF-8 \(byte 0xe9 at column 9\)"):
        reader(latin1)
    with pytest.raises(InputError, match="is a directory"):
        reader(tmp_path)


def test_qrels_conflicting_grades_and_beir_columns(tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt"
    path.write_text("1 0 D1 1\n1 0 D1 1\n1 0 D1 2\n")
    with pytest.raises(InputError, match=r"qrels.txt:3: conflicting grades for query 1, docid D1: 1 and 2"):
        read_qrels(path)
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\tD1\t1\n2\tD2\n")
    with pytest.raises(InputError, match=r"test.tsv:3: expected 3 columns \(query-id corpus-id score\), got 2"):
        read_qrels(beir)


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "run.trec.gz"
    path.write_bytes(gzip.compress("".join(f"1 Q0 D{i} {i} {-i} t\n" for i in range(1000)).encode())[:300])
    with pytest.raises(InputError, match="run.trec.gz:.*corrupt or truncated gzip"):
        read_run(path)
