"""Evaluation: metrics over ir-measures, the queries an average covers, and paired significance tests."""

from rankwise.eval.coverage import ALL_QRELS, RUN_QUERIES, Coverage, Evaluation, evaluate_with_coverage
from rankwise.eval.metrics import evaluate, evaluate_per_query, parse_measure, parse_measures, split_measures
from rankwise.eval.significance import Comparison, compare_runs, paired_t_test, randomisation_test

__all__ = ["ALL_QRELS", "Comparison", "Coverage", "Evaluation", "RUN_QUERIES", "compare_runs", "evaluate",
           "evaluate_per_query", "evaluate_with_coverage", "paired_t_test", "parse_measure", "parse_measures",
           "randomisation_test", "split_measures"]
