"""``rankwise bench``: methods x models x datasets on one effectiveness/cost plane."""

from rankwise.bench.config import BenchConfig, MethodSpec
from rankwise.bench.report import (cpus_that_timed, markdown_table, pareto_front, peer_table, plot, robustness_table,
                                   summary_table)
from rankwise.bench.runner import in_process, on_ray, run_bench

__all__ = ["BenchConfig", "MethodSpec", "cpus_that_timed", "markdown_table", "pareto_front", "peer_table", "plot",
           "in_process", "on_ray", "robustness_table", "run_bench", "summary_table"]
