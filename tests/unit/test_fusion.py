"""Fusion maths against values computed by hand (two small runs, k=60)."""

from __future__ import annotations

import math

import pytest

from rankwise.errors import InputError
from rankwise.fusion import fuse_rankings, interpolate, rrf
from rankwise.types import Candidate, Query, Ranking, Usage

A = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
B = {"q": {"d3": 0.9, "d1": 0.5, "d4": 0.1}}
Z = math.sqrt(1.5)  # the z-score of the top (and minus the bottom) of three evenly spaced scores


def test_rrf_sums_reciprocal_ranks():
    fused = rrf([A, B])["q"]
    assert fused == pytest.approx({"d1": 1 / 61 + 1 / 62, "d3": 1 / 63 + 1 / 61, "d2": 1 / 62, "d4": 1 / 63})
    assert list(fused) == ["d1", "d3", "d2", "d4"]  # the run lists documents in fused order
    assert rrf([A, B])["q"]["d1"] == pytest.approx(0.0325224748)


def test_rrf_weights_and_k():
    weighted = rrf([A, B], weights=[1, 2])["q"]
    assert weighted == pytest.approx({"d3": 1 / 63 + 2 / 61, "d1": 1 / 61 + 2 / 62, "d4": 2 / 63, "d2": 1 / 62})
    assert list(weighted) == ["d3", "d1", "d4", "d2"]  # 0.048660 beats 0.048652
    assert rrf([A, B], k=0)["q"] == pytest.approx({"d1": 1.5, "d3": 1 / 3 + 1, "d2": 0.5, "d4": 1 / 3})


def test_rrf_ranks_come_from_scores_not_dict_order():
    shuffled = {"q": {"d3": 1.0, "d1": 3.0, "d2": 2.0}}
    assert rrf([shuffled, B]) == rrf([A, B])


def test_ties_keep_the_order_of_first_appearance():
    fused = rrf([{"q": {"x": 2.0, "y": 1.0}}, {"q": {"y": 2.0, "x": 1.0}}])["q"]
    assert list(fused) == ["x", "y"] and fused["x"] == fused["y"]


def test_minmax_interpolation():
    fused = interpolate([A, B])["q"]  # A: 1, .5, 0; B: 1, .5, 0; a document a run lacks gets 0
    assert fused == pytest.approx({"d1": 0.75, "d3": 0.5, "d2": 0.25, "d4": 0.0})
    assert list(fused) == ["d1", "d3", "d2", "d4"]
    weighted = interpolate([A, B], weights=[0.2, 0.8])["q"]
    assert weighted == pytest.approx({"d3": 0.8, "d1": 0.6, "d2": 0.1, "d4": 0.0})
    assert list(weighted) == ["d3", "d1", "d2", "d4"]


def test_zscore_interpolation_gives_a_missing_document_the_lowest_z():
    fused = interpolate([A, B], norm="zscore")["q"]
    assert fused == pytest.approx({"d1": Z / 2, "d3": 0.0, "d2": -Z / 2, "d4": -Z})
    assert list(fused) == ["d1", "d3", "d2", "d4"]


def test_equal_scores_carry_no_information():
    flat = {"q": {"a": 5.0, "b": 5.0}}
    assert interpolate([flat, {"q": {"b": 1.0, "a": 0.0}}])["q"] == {"b": 0.5, "a": 0.0}
    assert interpolate([flat, flat], norm="zscore")["q"] == {"a": 0.0, "b": 0.0}


def test_every_query_of_any_run():
    fused = rrf([A, {"other": {"z": 1.0}}])
    assert set(fused) == {"q", "other"} and fused["other"] == pytest.approx({"z": 1 / 61})


def test_fuse_rankings_unions_candidates_and_sums_usage():
    query = Query("q", "text")
    cands = {d: Candidate(d, f"text of {d}") for d in ("d1", "d2", "d3", "d4")}
    a = Ranking(query, tuple(cands[d] for d in A["q"]), tuple(A["q"].values()), Usage(calls=3, seconds=1.0))
    b = Ranking(query, tuple(cands[d] for d in B["q"]), tuple(B["q"].values()), Usage(calls=2, seconds=0.5))
    fused = fuse_rankings([a, b])
    assert fused.docids == ["d1", "d3", "d2", "d4"]
    assert fused.scores == pytest.approx((1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63))
    assert fused.usage.calls == 5 and fused.usage.seconds == 1.5
    assert fused.candidates[0] is cands["d1"]
    assert fuse_rankings([a, b], "interpolate", weights=[0.2, 0.8]).docids == ["d3", "d1", "d2", "d4"]


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "borda"}, "unknown fusion method 'borda'"),
    ({"weights": [1.0]}, "1 weights for 2 ranked lists"),
    ({"k": -1}, "k must be a number >= 0"),
    ({"method": "interpolate", "norm": "max"}, "unknown normalisation 'max'"),
])
def test_bad_parameters_name_the_problem(kwargs, message):
    from rankwise.fusion import fuse_runs

    with pytest.raises(InputError, match=message):
        fuse_runs([A, B], **kwargs)
