"""Evaluation: metrics over ir-measures and paired significance tests."""

from rankwise.eval.metrics import evaluate, evaluate_per_query, parse_measure, parse_measures, split_measures
from rankwise.eval.significance import Comparison, compare_runs, paired_t_test, randomisation_test

__all__ = ["Comparison", "compare_runs", "evaluate", "evaluate_per_query", "paired_t_test", "parse_measure",
           "parse_measures", "randomisation_test", "split_measures"]
