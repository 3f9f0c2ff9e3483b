"""Paired significance tests between two runs (Student's paired t-test, a paired randomisation test) and the
bootstrap interval of a mean over queries.

Both runs are scored per query with :func:`rankwise.eval.metrics.evaluate_per_query` over the same
queries (every qrels query, missing ones as 0), so the pairs line up and the means equal ``evaluate``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from rankwise.errors import InputError
from rankwise.eval.metrics import MeasureLike, Qrels, Run, named_measures, evaluate_per_query

_BLOCK = 1000  # permutations drawn per block (bounds memory for many queries)


@dataclass(frozen=True)
class Comparison:
    """Run A against run B on one measure; ``delta`` is mean B - mean A."""

    measure: str
    queries: int
    mean_a: float
    mean_b: float
    delta: float
    t_test_p: float
    randomisation_p: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test; 1.0 when every pair is equal, NaN with fewer than 2 pairs."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2:
        return math.nan
    if np.array_equal(x, y):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant non-zero differences: t is infinite
        return float(stats.ttest_rel(x, y).pvalue)


def randomisation_test(a: Sequence[float], b: Sequence[float], permutations: int = 10_000,
                       seed: int = 0) -> float:
    """Two-sided p-value of the paired randomisation (sign-flip) test on the mean difference.

    Each permutation swaps A and B for a random subset of queries; p = (k + 1) / (permutations + 1),
    k the number of permutations whose |mean difference| reaches the observed one.
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) == 0:
        return math.nan
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, _BLOCK):
        n = min(_BLOCK, permutations - start)
        signs = rng.integers(0, 2, size=(n, len(d)), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / len(d)
        hits += int(np.count_nonzero(means >= observed - tolerance))
    return (hits + 1) / (permutations + 1)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (queries resampled with replacement);
    (v, v) for one value or identical values, NaNs for none."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    ci = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def compare_runs(run_a: Run, run_b: Run, qrels: Qrels, measures: Sequence[MeasureLike], *,
                 permutations: int = 10_000, seed: int = 0,
                 run_queries_only: bool = False) -> list[Comparison]:
    """Compare two runs on each measure; with ``run_queries_only`` only queries both runs hold count."""
    named = named_measures(measures)
    if run_queries_only:
        both = set(run_a) & set(run_b)
        qrels = {qid: judged for qid, judged in qrels.items() if qid in both}
        if not qrels:
            raise InputError("the two runs share no query of the qrels")
    per_a = evaluate_per_query(run_a, qrels, list(named.values()))
    per_b = evaluate_per_query(run_b, qrels, list(named.values()))
    qids = list(per_a)
    out = []
    for name, measure in named.items():
        key = str(measure)
        a = np.array([per_a[q][key] for q in qids])
        b = np.array([per_b[q][key] for q in qids])
        out.append(Comparison(measure=name, queries=len(qids), mean_a=float(a.mean()),
                              mean_b=float(b.mean()), delta=float(b.mean() - a.mean()),
                              t_test_p=paired_t_test(a, b),
                              randomisation_p=randomisation_test(a, b, permutations, seed)))
    return out
