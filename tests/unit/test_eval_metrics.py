"""rankwise.eval.metrics: parsing measures, the averaging convention, pinned scores of stored runs."""

from __future__ import annotations

import pytest

from rankwise.data import read_qrels, read_run
from rankwise.errors import InputError
from rankwise.eval import (
    evaluate,
    evaluate_per_query,
    parse_measure,
    parse_measures,
    split_measures,
)

QRELS = {"q1": {"a": 2, "b": 0}, "q2": {"c": 1}, "q3": {"d": 1, "e": 2}}
RUN = {"q1": {"b": 3.0, "a": 2.0}, "q2": {"c": 1.0}, "q9": {"x": 1.0}}  # q3 missing, q9 unjudged


def test_parse_measures_accepts_ir_measures_syntax() -> None:
    measures = parse_measures(["nDCG@10", "RR@10 R@100", "AP,RR(rel=2)@10"])
    assert [str(m) for m in measures] == ["nDCG@10", "RR@10", "R@100", "AP", "RR(rel=2)@10"]


def test_split_keeps_commas_and_spaces_inside_parentheses() -> None:
    assert split_measures(["RR(rel=2, judged_only=True)@10,nDCG@10  nDCG@10"]) == \
        ["RR(rel=2, judged_only=True)@10", "nDCG@10"]


@pytest.mark.parametrize("text, message", [
    ("nDGC@10", "unknown measure 'nDGC@10' (did you mean nDCG?)"),
    ("R@100)", "invalid measure 'R@100)'"),
    ("RR(foo=2)@10", "invalid measure 'RR(foo=2)@10'"),
])
def test_bad_measure_is_an_input_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_measure(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_no_measure_is_an_error() -> None:
    with pytest.raises(InputError, match="no measure"):
        parse_measures([" , "])


def test_keys_are_the_strings_the_user_wrote() -> None:
    scores = evaluate(RUN, QRELS, ["RR(rel=2)@10", "P@1", "nDCG@10"])
    assert list(scores) == ["RR(rel=2)@10", "P@1", "nDCG@10"]


def test_missing_queries_count_zero_and_unjudged_are_ignored() -> None:
    per_query = evaluate_per_query(RUN, QRELS, ["RR@10"])
    assert per_query == {"q1": {"RR@10": 0.5}, "q2": {"RR@10": 1.0}, "q3": {"RR@10": 0.0}}
    assert evaluate(RUN, QRELS, ["RR@10"]) == {"RR@10": pytest.approx(1.5 / 3)}


def test_run_queries_only_averages_over_the_runs_judged_queries() -> None:
    assert evaluate(RUN, QRELS, ["RR@10"], run_queries_only=True) == {"RR@10": pytest.approx(0.75)}
    assert list(evaluate_per_query(RUN, QRELS, ["RR@10"], run_queries_only=True)) == ["q1", "q2"]
    with pytest.raises(InputError, match="no query of the run is in the qrels"):
        evaluate({"zz": {"a": 1.0}}, QRELS, ["AP"], run_queries_only=True)


def test_graded_relevance_threshold() -> None:
    # q1: 'a' (grade 2) at rank 2; q2: only grade 1; q3 missing
    assert evaluate(RUN, QRELS, ["RR(rel=2)@10"]) == {"RR(rel=2)@10": pytest.approx(0.5 / 3)}


def test_per_query_mean_equals_aggregate(dl19) -> None:
    run = read_run(dl19 / "run.bm25.top100.trec")
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")
    names = ["nDCG@10", "RR(rel=2)@10", "R@100", "AP"]
    aggregate = evaluate(run, qrels, names)
    per_query = evaluate_per_query(run, qrels, names)
    for name in names:
        assert sum(row[name] for row in per_query.values()) / len(per_query) == pytest.approx(aggregate[name])


@pytest.mark.parametrize("folder, qrels, expected", [
    ("dl19", "qrels.dl19-passage.txt", {"nDCG@10": 0.5058, "RR(rel=2)@10": 0.7024, "R@100": 0.4531}),
    ("dl20", "qrels.dl20-passage.txt", {"nDCG@10": 0.4796, "RR(rel=2)@10": 0.6533, "R@100": 0.4834}),
])
def test_pinned_bm25_scores(request, folder: str, qrels: str, expected: dict) -> None:
    """nDCG@10 as Pyserini publishes for BM25 (0.5058 / 0.4796). RR(rel=2)@10 equals a hand count of the
    first grade>=2 passage in the top 10; ir-measures' pytrec_eval route would give 0.7036 / 0.6583."""
    root = request.getfixturevalue(folder)
    scores = evaluate(read_run(root / "run.bm25.top100.trec"), read_qrels(root / qrels), list(expected))
    assert {k: round(v, 4) for k, v in scores.items()} == expected


def test_every_measure_ranks_in_the_runs_order_even_with_tied_scores() -> None:
    qrels = {"q": {"a": 1}}
    tied_a_first = {"q": {"a": 1.0, "b": 1.0}}
    tied_b_first = {"q": {"b": 1.0, "a": 1.0}}
    assert evaluate(tied_a_first, qrels, ["RR@10", "nDCG@10", "RR(rel=1)@10"]) == \
        {"RR@10": 1.0, "nDCG@10": 1.0, "RR(rel=1)@10": 1.0}
    assert evaluate(tied_b_first, qrels, ["RR@10", "nDCG@10", "RR(rel=1)@10"]) == \
        {"RR@10": 0.5, "nDCG@10": pytest.approx(0.6309, abs=1e-4), "RR(rel=1)@10": 0.5}
