"""Training data: groups from qrels + a first-stage run, splits by query, SciFact's training claims."""

from __future__ import annotations

import pytest

from rankwise.errors import InputError
from rankwise.train.groups import (
    TrainingSource,
    build_groups,
    drop_held_out,
    scifact_claims,
    split_queries,
    teacher_labels,
)
from rankwise.types import Document


def _source() -> TrainingSource:
    docs = {f"d{i}": Document(f"d{i}", f"text {i}", title=f"T{i}" if i % 2 else "") for i in range(12)}
    queries = {"q1": "first", "q2": "second", "q3": "no positive"}
    qrels = {"q1": {"d0": 2, "d1": 1, "d5": 0, "dX": 3}, "q2": {"d11": 1}, "q3": {"d2": 0}}
    run = {q: {f"d{i}": 10.0 - i for i in range(10)} for q in queries}
    return TrainingSource(queries, qrels, docs, run, held_out={})


def test_groups_put_the_positive_first_keep_grades_and_draw_negatives_from_the_run():
    groups = build_groups(_source(), group_size=4, groups_per_query=4, depth=10, min_grade=1)
    assert [(g.qid, g.docids[0]) for g in groups] == [("q1", "d0"), ("q1", "d1"), ("q2", "d11")]
    for g in groups:
        assert len(g.docids) == len(set(g.docids)) == len(g.labels) == len(g.texts) == 4
        assert all(d not in ("d0", "d1", "d11", "dX") for d in g.docids[1:])  # no positive among negatives
        assert all(d in [f"d{i}" for i in range(10)] for d in g.docids[1:])
    assert groups[0].labels[0] == 2.0 and groups[1].labels[0] == 1.0
    assert groups[0].difficulty == 1 and groups[2].difficulty == 11  # d11 is beyond the run's top 10
    assert groups[1].texts[0] == "T1\ntext 1"


def test_min_grade_keeps_lower_grades_as_graded_negatives():
    groups = build_groups(_source(), group_size=10, groups_per_query=1, depth=10, min_grade=2)
    assert len(groups) == 1 and groups[0].docids[0] == "d0"
    assert dict(zip(groups[0].docids, groups[0].labels))["d1"] == 1.0


def test_groups_are_deterministic_and_seeded():
    a = build_groups(_source(), group_size=4, seed=1)
    assert a == build_groups(_source(), group_size=4, seed=1)
    assert [g.docids for g in a] != [g.docids for g in build_groups(_source(), group_size=4, seed=2)]


def test_too_few_negatives_skip_the_query():
    assert build_groups(_source(), group_size=12, depth=10) == []  # q2 has only 10 negatives


def test_unjudged_queries_get_groups_led_by_the_first_stage_only_when_asked():
    source = _source()
    source.queries["q4"] = "never judged"
    source.run["q4"] = dict(source.run["q1"])
    judged_only = build_groups(source, group_size=4, groups_per_query=2, depth=10)
    assert "q4" not in {g.qid for g in judged_only}
    both = build_groups(source, group_size=4, groups_per_query=2, depth=10, unjudged=True)
    assert [g for g in both if g.qid != "q4"] == judged_only  # judged queries' groups unchanged
    led = [g for g in both if g.qid == "q4"]
    assert [g.docids[0] for g in led] == ["d0", "d1"] and [g.difficulty for g in led] == [1, 2]
    for g in led:
        assert len(set(g.docids)) == 4 and set(g.docids) <= {f"d{i}" for i in range(10)}
        assert g.labels == (0.0,) * 4  # the teacher labels them
    assert not [g for g in both if g.qid == "q3"]  # judged, but no positive: still skipped


def test_split_is_by_query_stable_and_disjoint():
    qids = [f"q{i}" for i in range(100)]
    train, dev = split_queries(qids, 0.2, seed=3)
    assert len(dev) == 20 and not set(train) & set(dev) and set(train) | set(dev) == set(qids)
    assert (train, dev) == split_queries(qids, 0.2, seed=3)
    assert split_queries(qids, 0.0) == (qids, [])


def test_held_out_queries_are_dropped_by_id_and_by_text():
    kept = drop_held_out({"1": "A claim.", "2": "other", "3": " a CLAIM. "}, {"1": "x", "9": "a claim."})
    assert kept == {"2": "other"}


def test_teacher_labels_fill_missing_documents_with_the_query_minimum():
    groups = build_groups(_source(), group_size=3, groups_per_query=1)
    teacher = {"q1": {"d0": 5.0, groups[0].docids[1]: 1.0}, "q2": {"d11": 4.0, "d0": 2.0}}
    labels = teacher_labels(groups, teacher, scale=2.0)
    assert labels[0] == (10.0, 2.0, 2.0)
    with pytest.raises(InputError, match="no scores for training query"):
        teacher_labels(groups, {"q1": {"d0": 1.0}})


def test_scifact_training_claims(scifact):
    queries, qrels = scifact_claims(scifact / "raw", "train")
    assert len(queries) == 809
    assert qrels["2"] == {"13734012": 1}  # evidence document
    assert qrels["35"] == {"5152028": 1, "11705328": 1}  # no evidence: the cited documents (numpy repr)
    with pytest.raises(InputError, match="no SciFact claims file"):
        scifact_claims(scifact / "raw", "nope")


def _many_positives() -> TrainingSource:
    source = _source()
    source.qrels["q1"] = {"d0": 3, "d1": 2, "d2": 2, "d3": 1, "d4": 2}
    return source


def test_max_positives_mixes_other_positives_into_groups_and_varies_their_count():
    groups = build_groups(_many_positives(), group_size=5, groups_per_query=3, depth=10, min_grade=2, seed=4,
                          max_positives=3)
    q1 = [g for g in groups if g.qid == "q1"]
    assert [g.docids[0] for g in q1] == ["d0", "d1", "d2"]  # lead positives, best grade first
    for g in q1:
        assert len(set(g.docids)) == 5
        positives = [d for d, label in zip(g.docids, g.labels) if label >= 2]
        assert g.docids[: len(positives)] == tuple(positives)  # the extra positives follow the lead
        assert 1 <= len(positives) <= 3
    seeds = [build_groups(_many_positives(), group_size=5, groups_per_query=3, depth=10, min_grade=2, seed=s,
                          max_positives=3) for s in range(12)]
    drawn = {sum(label >= 2 for label in g.labels) for run in seeds for g in run if g.qid == "q1"}
    assert drawn == {1, 2, 3}  # the count is drawn per group, not fixed


def test_max_positives_one_keeps_the_groups_of_earlier_runs():
    assert build_groups(_many_positives(), group_size=5, groups_per_query=3, depth=10, min_grade=2, seed=4) == \
        build_groups(_many_positives(), group_size=5, groups_per_query=3, depth=10, min_grade=2, seed=4,
                     max_positives=1)
