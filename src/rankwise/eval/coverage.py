"""Which queries an average covers, stated with every figure.

Two conventions exist and give different numbers whenever a run holds fewer queries than the qrels:

- ``all-qrels`` (``trec_eval -c``): every judged query counts; one missing from the run scores 0.
- ``run-queries`` (``trec_eval`` without ``-c``, ``--run-queries-only``): only the judged queries of the run.

:func:`evaluate_with_coverage` gives the figure of the chosen convention, what it covers, and, when the
two differ, the other convention's figure too, so a report never hides which one it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from rankwise.eval.metrics import MeasureLike, Qrels, Run, evaluate

ALL_QRELS = "all-qrels"
RUN_QUERIES = "run-queries"


@dataclass(frozen=True)
class Coverage:
    """Query counts behind an average, and the convention that chose them."""

    convention: str  # ALL_QRELS or RUN_QUERIES
    averaged_over: int  # queries in the average
    in_run: int  # queries the run holds
    in_qrels: int  # queries the qrels judge
    missing_from_run: int  # judged queries the run lacks (0 under all-qrels, left out under run-queries)
    unjudged_in_run: int  # run queries without judgments (never evaluated)

    @classmethod
    def of(cls, run: Run, qrels: Qrels, run_queries_only: bool) -> "Coverage":
        judged_in_run = sum(1 for qid, docs in run.items() if qid in qrels and docs)
        return cls(convention=RUN_QUERIES if run_queries_only else ALL_QRELS,
                   averaged_over=judged_in_run if run_queries_only else len(qrels), in_run=len(run),
                   in_qrels=len(qrels), missing_from_run=len(qrels) - judged_in_run,
                   unjudged_in_run=sum(1 for qid in run if qid not in qrels))

    @property
    def conventions_differ(self) -> bool:
        """The two conventions average over different queries (so give different figures)."""
        return self.missing_from_run > 0

    def describe(self) -> str:
        """One line: what the average covers and what was left out or counted as 0."""
        if self.convention == ALL_QRELS:
            text = f"averaged over all {self.averaged_over} qrels queries (trec_eval -c)"
            if self.missing_from_run:
                text += f"; {self.missing_from_run} missing from the run count as 0"
        else:
            text = f"averaged over the {self.averaged_over} judged queries of the run (trec_eval without -c)"
            if self.missing_from_run:
                text += f"; {self.missing_from_run} qrels queries not in the run are left out"
        if self.unjudged_in_run:
            text += f"; {self.unjudged_in_run} run queries have no qrels and are not evaluated"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """The figures of one convention, what they cover, and the other convention's figures where they differ."""

    scores: dict[str, float]
    coverage: Coverage
    other: dict[str, float] | None = None  # the other convention's scores (None when both agree)

    @property
    def other_convention(self) -> str:
        return RUN_QUERIES if self.coverage.convention == ALL_QRELS else ALL_QRELS

    def to_dict(self, round_to: Callable[[float], float | None] | None = None) -> dict:
        """``{measure: value, ..., "queries": coverage, "other_convention": {...}}`` (the last where they
        differ); measures stay at the top level so ``result["nDCG@10"]`` reads the chosen figure."""
        fix = round_to or (lambda v: v)
        out: dict = {name: fix(value) for name, value in self.scores.items()}
        out["queries"] = self.coverage.to_dict()
        if self.other is not None:
            out["other_convention"] = {"convention": self.other_convention,
                                       **{name: fix(value) for name, value in self.other.items()}}
        return out


def evaluate_with_coverage(run: Run, qrels: Qrels, measures: Sequence[MeasureLike], *,
                           run_queries_only: bool = False) -> Evaluation:
    """Scores under the chosen convention, their coverage, and the other convention's scores if they differ."""
    coverage = Coverage.of(run, qrels, run_queries_only)
    scores = evaluate(run, qrels, measures, run_queries_only=run_queries_only)
    other = None
    if coverage.conventions_differ and coverage.in_qrels > coverage.missing_from_run:  # some judged query ran
        other = evaluate(run, qrels, measures, run_queries_only=not run_queries_only)
    return Evaluation(scores, coverage, other)
