"""Query selection that does not depend on file order: qid order, --qids lists and files, their errors."""

from __future__ import annotations

import pytest

from rankwise.data.selection import describe_selection, parse_qids, qid_key, select_qids
from rankwise.errors import InputError


def test_qids_sort_numerically_then_as_strings() -> None:
    assert sorted(["10", "b", "2", "a10", "1"], key=qid_key) == ["1", "2", "10", "a10", "b"]


def test_max_queries_takes_the_same_queries_whatever_the_file_order() -> None:
    assert select_qids(["10", "3", "2", "1"], max_queries=2) == select_qids(["1", "2", "3", "10"], max_queries=2) \
        == ["1", "2"]


def test_named_qids_must_exist_and_come_back_in_qid_order() -> None:
    assert select_qids(["1", "2", "3"], qids=["3", "1"]) == ["1", "3"]
    assert select_qids(["1", "2", "3"], qids=["3", "1", "2"], max_queries=2) == ["1", "2"]
    with pytest.raises(InputError, match="--qids: 7, 8 not in run.trec"):
        select_qids(["1"], qids=["7", "8"], source="run.trec")
    with pytest.raises(InputError, match="at least 1"):
        select_qids(["1"], max_queries=0)


def test_parse_qids_from_a_list_or_a_file(tmp_path) -> None:
    assert parse_qids("3, 1,3") == ["3", "1"]
    listed = tmp_path / "qrels.txt"
    listed.write_text("# judged\n5 0 d1 1\n5 0 d2 0\n4 0 d1 1\n\n")
    assert parse_qids(str(listed)) == ["5", "4"]
    with pytest.raises(InputError, match="no such file 'nope/qids.txt'"):
        parse_qids("nope/qids.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="no query ids in the file"):
        parse_qids(str(empty))


def test_the_selection_is_described_with_its_qids() -> None:
    assert describe_selection(["1", "2"], 5) == "selected 2 of 5 queries (qid order): 1, 2"
    assert describe_selection([str(i) for i in range(12)], 20).endswith("9, ... (2 more)")
