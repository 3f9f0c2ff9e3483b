"""rankwise.eval.significance: paired t-test and randomisation test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from rankwise.data import read_qrels, read_run
from rankwise.eval import compare_runs, evaluate, paired_t_test, randomisation_test


def test_t_test_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(40), rng.random(40)
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_equal_scores_give_p_one_and_too_few_pairs_nan() -> None:
    assert paired_t_test([0.1, 0.5, 0.2], [0.1, 0.5, 0.2]) == 1.0
    assert randomisation_test([0.1, 0.5, 0.2], [0.1, 0.5, 0.2]) == 1.0
    assert math.isnan(paired_t_test([0.3], [0.4]))


def test_randomisation_test_approaches_the_exact_sign_flip_p_value() -> None:
    a = np.array([0.2, 0.4, 0.1, 0.9, 0.5, 0.3, 0.7, 0.0, 0.6, 0.8])
    b = a + np.array([0.3, 0.1, -0.05, 0.2, 0.15, 0.0, 0.25, 0.1, -0.1, 0.05])
    d = b - a
    flips = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = float(np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-12))
    assert randomisation_test(a, b, permutations=20_000, seed=3) == pytest.approx(exact, abs=0.01)


def test_randomisation_test_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    assert randomisation_test(a, b, seed=7) == randomisation_test(a, b, seed=7)
    assert 1 / 10_001 <= randomisation_test(a, b, seed=7) <= 1.0


def test_compare_runs_on_stored_dl19_runs(dl19) -> None:
    qrels = read_qrels(dl19 / "qrels.dl19-passage.txt")
    bm25 = read_run(dl19 / "run.bm25.top100.trec")
    splade = read_run(dl19 / "run.splade_p_p_ensemble_distil.top100.trec")
    (result,) = compare_runs(bm25, splade, qrels, ["nDCG@10"], permutations=2_000)
    assert result.measure == "nDCG@10" and result.queries == 43
    assert result.mean_a == pytest.approx(evaluate(bm25, qrels, ["nDCG@10"])["nDCG@10"])
    assert result.mean_b == pytest.approx(evaluate(splade, qrels, ["nDCG@10"])["nDCG@10"])
    assert result.delta == pytest.approx(result.mean_b - result.mean_a)
    assert result.delta > 0.2 and result.t_test_p < 0.001 and result.randomisation_p < 0.001
