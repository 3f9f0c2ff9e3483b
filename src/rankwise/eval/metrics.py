"""Retrieval metrics over ir-measures (pytrec_eval first, other providers where it lacks a measure).

Convention (as ``trec_eval -c``): a metric is averaged over **every query of the qrels**; a query missing
from the run scores 0, and run queries absent from the qrels are ignored. Pass ``run_queries_only=True``
to restrict the qrels to the run's queries instead (for a run over a subset of the topics).

Documents are ranked in the run's order (a Run's insertion order; ``read_run`` sorts by score and keeps
file order among ties). Every measure sees that same order: ir-measures' providers would otherwise break
tied scores differently (pytrec_eval by docid, others by input order). Without ties this is trec_eval's
ranking exactly.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Mapping, Sequence

import ir_measures
from ir_measures.measures.base import Measure

from rankwise.errors import InputError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
MeasureLike = str | Measure

# Separators between measures: whitespace or commas outside parentheses ("RR(rel=2, judged_only=True)" is one).
_SPLIT = re.compile(r"[\s,]+(?![^()]*\))")


def split_measures(values: Iterable[str]) -> list[str]:
    """Split 'nDCG@10 RR@10,R@100' style strings into one string per measure (duplicates dropped)."""
    out: list[str] = []
    for value in values:
        for part in _SPLIT.split(value):
            if part and part not in out:
                out.append(part)
    return out


def parse_measure(text: str) -> Measure:
    """Parse one ir-measures string (``nDCG@10``, ``RR(rel=2)@10``); InputError naming it if unknown."""
    try:
        measure = ir_measures.parse_measure(text)
        measure.validate_params()
    except NameError:
        close = difflib.get_close_matches(text.split("@")[0].split("(")[0], ir_measures.measures.registry,
                                          n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InputError(f"unknown measure '{text}'{hint}") from None
    except (ValueError, SyntaxError, KeyError, AssertionError) as err:
        raise InputError(f"invalid measure '{text}': {err}") from None
    if not ir_measures.DefaultPipeline.supports(measure):
        raise InputError(f"measure '{text}' needs an ir-measures provider that is not installed")
    return measure


def parse_measures(strings: Iterable[str]) -> list[Measure]:
    """Parse measures given as strings (each may hold several, space- or comma-separated)."""
    names = split_measures(strings)
    if not names:
        raise InputError("no measure given")
    return [parse_measure(name) for name in names]


def named_measures(measures: Iterable[MeasureLike]) -> dict[str, Measure]:
    """Map the name the user wrote (or str(measure)) to the parsed measure, keeping order."""
    named: dict[str, Measure] = {}
    for item in measures:
        if isinstance(item, str):
            for name in split_measures([item]):
                named[name] = parse_measure(name)
        else:
            named[str(item)] = item
    if not named:
        raise InputError("no measure given")
    return named


def _prepare(run: Run, qrels: Qrels, run_queries_only: bool) -> tuple[dict, dict]:
    """Plain dicts for ir-measures: scores replaced by rank (n, n-1, ..., 1) so that every provider ranks
    the run in its own order; empty entries dropped; qrels optionally cut to the run's queries."""
    run_d = {qid: {docid: float(len(docs) - i) for i, docid in enumerate(docs)} for qid, docs in run.items() if docs}
    qrels_d = {qid: dict(judged) for qid, judged in qrels.items()
               if not run_queries_only or qid in run_d}
    if not qrels_d:
        raise InputError("no query of the run is in the qrels" if run_queries_only else "the qrels are empty")
    return run_d, qrels_d


def evaluate(run: Run, qrels: Qrels, measures: Sequence[MeasureLike], *,
             run_queries_only: bool = False) -> dict[str, float]:
    """Aggregate value of each measure, keyed exactly as the measure was written (e.g. ``"nDCG@10"``)."""
    named = named_measures(measures)
    run_d, qrels_d = _prepare(run, qrels, run_queries_only)
    values = ir_measures.calc_aggregate(list(set(named.values())), qrels_d, run_d)
    return {name: float(values[measure]) for name, measure in named.items()}


def evaluate_per_query(run: Run, qrels: Qrels, measures: Sequence[MeasureLike], *,
                       run_queries_only: bool = False) -> dict[str, dict[str, float]]:
    """Value of each measure for each evaluated query (qrels order), missing queries as 0."""
    named = named_measures(measures)
    run_d, qrels_d = _prepare(run, qrels, run_queries_only)
    by_measure: dict[Measure, list[str]] = {}
    for name, measure in named.items():
        by_measure.setdefault(measure, []).append(name)
    per_query: dict[str, dict[str, float]] = {qid: dict.fromkeys(named, 0.0) for qid in qrels_d}
    for metric in ir_measures.iter_calc(list(by_measure), qrels_d, run_d):
        if metric.query_id in per_query:
            for name in by_measure[metric.measure]:
                per_query[metric.query_id][name] = float(metric.value)
    return per_query
