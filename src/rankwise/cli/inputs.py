"""What ``rerank`` and ``run`` read: requests (a candidates file, or a dataset plus a run), the qrels at hand
(``--qrels`` or the dataset's), the queries selected, and the effectiveness printed when qrels exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from rankwise.data.trec import Qrels, Run
from rankwise.errors import InputError
from rankwise.types import Request

QRELS_HELP = "TREC qrels or BEIR qrels TSV: print effectiveness (default: the dataset's qrels, if any)."
QIDS_HELP = ("Only these queries (taken as given, judged or not): a comma-separated list, or a file whose "
             "lines start with a qid (a list, topics TSV or qrels).")
MAX_QUERIES_HELP = ("Only the first N queries in qid order (numeric qids by value, then the rest as strings), "
                    "of the judged ones (or of --qids): the same N for any run of one collection.")


@dataclass
class Inputs:
    """The requests to rerank (selected, in qid order when a selection applies), the dataset they come
    from (if any) and the qrels at hand (if any)."""

    requests: list[Request]
    dataset: object | None
    qrels: Qrels | None


def read_qrels_option(qrels: Optional[Path], dataset) -> Qrels | None:
    """``--qrels FILE`` read, else the dataset's qrels, else None."""
    from rankwise.data import read_qrels

    if qrels is not None:
        return read_qrels(qrels)
    return dataset.qrels if dataset is not None and dataset.qrels else None


def select(available: list[str], qrels: Qrels | None, judged_only: bool, qids: Optional[str],
           max_queries: Optional[int], source: str, err: Console) -> list[str]:
    """The qids to run: judged ones (when qrels are at hand and ``judged_only``), those named by ``--qids``,
    then the first ``max_queries`` in qid order; the selection is printed when one was made."""
    from rankwise.data.selection import describe_selection, parse_qids, select_qids

    named = parse_qids(qids) if qids is not None else None
    pool = available
    if judged_only and qrels is not None and named is None:
        pool = [q for q in available if q in qrels]
    chosen = select_qids(pool, qids=named, max_queries=max_queries, source=source)
    if not chosen:
        raise InputError(f"no queries to run: none of the {len(available)} queries of {source} "
                         "is in the qrels (pass --no-judged-only to run them anyway)")
    if named is not None or max_queries is not None:
        err.print(describe_selection(chosen, len(available)))
    return chosen


def load_inputs(candidates: Optional[Path], dataset: Optional[str], run: Optional[str], qrels: Optional[Path],
                judged_only: bool, qids: Optional[str], max_queries: Optional[int], err: Console,
                top_k: int | None = None) -> Inputs:
    """Requests from a candidates file, or from a dataset plus a run (a path, or a first stage it ships),
    cut to ``top_k`` candidates when given, and the selected queries of them."""
    from rankwise.data import load_dataset, read_candidates

    ds = load_dataset(dataset) if dataset else None
    if candidates is not None:
        requests, source = read_candidates(candidates), str(candidates)
    elif ds is not None and run is not None:
        if _looks_like_a_file(run) and not Path(run).exists():
            raise InputError(f"{run}: no such run file (or give a first stage {ds.name} ships, e.g. bm25)")
        requests, source = ds.requests(run), run
    else:
        raise InputError("give --candidates FILE, or --dataset D with --run RUN (a file or a name like bm25)")
    judgments = read_qrels_option(qrels, ds)
    by_qid = {r.query.qid: r for r in requests}
    chosen = select(list(by_qid), judgments, judged_only, qids, max_queries, source, err)
    if top_k is not None:
        return Inputs([Request(by_qid[q].query, by_qid[q].candidates[:top_k]) for q in chosen], ds, judgments)
    return Inputs([by_qid[q] for q in chosen], ds, judgments)


def _looks_like_a_file(run: str) -> bool:
    return "/" in run or Path(run).suffix.lower() in (".trec", ".txt", ".run", ".gz", ".tsv")


def print_evaluation(run: Run, qrels: Qrels | None, metrics: str, console: Console) -> dict | None:
    """Print the measures of ``run`` when qrels are at hand: over the judged queries of the run, with the
    trec_eval -c figure beside it when the qrels hold more; returns the figures as a JSON-ready dict."""
    if not qrels:
        return None
    from rankwise.cli.measures import round4
    from rankwise.eval import evaluate_with_coverage

    if not any(q in qrels for q in run):
        console.print("no query of the run is in the qrels: nothing to evaluate")
        return None
    result = evaluate_with_coverage(run, qrels, metrics.replace(",", " ").split(), run_queries_only=True)
    line = "  ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    console.print(f"{line}  ({result.coverage.describe()})")
    if result.other is not None:
        other = "  ".join(f"{k} {v:.4f}" for k, v in result.other.items())
        console.print(f"{other}  (over all {result.coverage.in_qrels} qrels queries, missing ones as 0: "
                      "trec_eval -c)")
    return result.to_dict(round4)
