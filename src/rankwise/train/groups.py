"""Training data from what users have: judged queries (qrels) + a first-stage run -> groups of documents.

A group is one query, one positive and ``group_size - 1`` hard negatives drawn from the first stage's top
``depth``; every document keeps its graded label (unjudged = 0). Splits are by query, never by pair, so no
query's documents sit on both sides.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from rankwise.data import Dataset, Qrels, Run, load_dataset, read_qrels, read_run, read_topics, write_run
from rankwise.data.candidates import read_candidates, run_from_requests
from rankwise.errors import InputError
from rankwise.types import Document

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """One training list: the (lead) positive first, then the negatives (and, with ``max_positives`` > 1, other
    positives right after the lead); a graded label per document."""

    qid: str
    query: str
    docids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[float, ...]
    difficulty: int
    """First-stage rank of the positive (1 = easiest); ``depth + 1`` when the first stage missed it."""


@dataclass
class TrainingSource:
    """Judged training queries, the documents, and the first-stage run negatives come from."""

    queries: dict[str, str]
    qrels: Qrels
    docs: Mapping[str, Document]
    run: Run
    held_out: dict[str, str]
    """Queries that must never be trained on (the dataset's test queries when training on another split)."""


def doc_text(doc: Document) -> str:
    """Title and text as one passage, as ``Candidate.content`` shows it to rerankers."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


# -- SciFact's training claims -------------------------------------------------------------------------------

def scifact_claims(raw_dir: str | Path, split: str = "train") -> tuple[dict[str, str], Qrels]:
    """Queries and qrels from SciFact's claims CSV (``raw/claims_<split>.csv.gz``).

    As BEIR builds SciFact's qrels: a claim's evidence documents are relevant (grade 1); a claim without
    evidence is judged by the documents it cites.
    """
    path = Path(raw_dir) / f"claims_{split}.csv.gz"
    if not path.is_file():
        raise InputError(f"no SciFact claims file for split {split!r}", path)
    queries: dict[str, str] = {}
    evidence: dict[str, set[str]] = {}
    cited: dict[str, set[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                qid, claim = row["id"].strip(), row["claim"].strip()
                cites = re.findall(r"\d+", row["cited_doc_ids"])  # numpy repr: "[ 5152028 11705328]"
            except KeyError as err:
                raise InputError(f"malformed claims row: {err}", path, n) from None
            queries[qid] = claim
            if row["evidence_doc_id"].strip():
                evidence.setdefault(qid, set()).add(row["evidence_doc_id"].strip())
            cited.setdefault(qid, set()).update(str(c) for c in cites)
    qrels = {qid: {d: 1 for d in (evidence.get(qid) or cited.get(qid, ()))} for qid in queries}
    return queries, {q: docs for q, docs in qrels.items() if docs}


# -- the first stage ------------------------------------------------------------------------------------------

def cached_bm25_run(ds: Dataset, queries: Mapping[str, str], depth: int, cache: Path | None = None) -> Run:
    """BM25 (rankwise.retrieve.bm25) over ``ds``'s corpus for ``queries``, stored once as a TREC run."""
    from rankwise.llm.models import cache_dir

    key = hashlib.sha1(repr((ds.name, sorted(queries.items()), depth)).encode()).hexdigest()[:12]
    path = (cache or cache_dir() / "train-runs") / f"bm25.{Path(ds.name).name}.{key}.top{depth}.trec"
    if path.is_file():
        return read_run(path)
    if ds.docs is None or not isinstance(ds.docs, dict):
        raise InputError(f"dataset {ds.name} has no corpus to retrieve from; name a first stage it ships "
                         "or give a TREC run file as data.first_stage")
    from rankwise.retrieve.bm25 import BM25Retriever

    logger.info("BM25 over %d documents for %d training queries (cached in %s)", len(ds.docs), len(queries), path)
    run = BM25Retriever(show_progress=False).index(ds.docs).retrieve(queries, top_k=depth)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_run({q: docs for q, docs in run.items() if docs}, tmp, tag="bm25")
    tmp.replace(path)
    return run


def first_stage_run(ds: Dataset, name: str, queries: Mapping[str, str], depth: int) -> Run:
    """A first stage by name (shipped run or candidates file), a TREC run file, or BM25 over the corpus."""
    if name in ds.runs:
        return read_run(ds.runs[name])
    if name in ds.candidates:
        return run_from_requests(read_candidates(ds.candidates[name]))
    if Path(name).is_file():
        return read_run(name)
    if name == "bm25":
        return cached_bm25_run(ds, queries, depth)
    known = sorted(set(ds.runs) | set(ds.candidates))
    raise InputError(f"field 'data.first_stage': {name!r} is no run file and dataset {ds.name} ships no such "
                     f"first stage (it has: {', '.join(known) or 'none'}; or use bm25)")


def load_source(dataset: str, queries: str = "dataset", qrels: str | None = None, first_stage: str = "bm25",
                depth: int = 100, synthetic=None, seed: int = 13, unjudged: bool = False) -> TrainingSource:
    """Resolve the training queries, their qrels, the documents and the first-stage run. ``queries:
    synthetic`` generates them with an LLM over the corpus (``synthetic``: a SyntheticQueriesConfig);
    ``unjudged`` keeps the queries without judgments (labelled by a teacher)."""
    from rankwise.data import resolve_local

    ds = load_dataset(dataset)
    if ds.docs is None:
        raise InputError(f"dataset {ds.name} has no document texts to train on")
    held_out: dict[str, str] = {}
    if queries == "dataset":
        train_queries, train_qrels = (dict(ds.queries) if unjudged else ds.judged_queries()), ds.qrels
    elif queries == "scifact-train":
        local = resolve_local(dataset)
        if local is None:
            raise InputError(f"queries scifact-train need SciFact's local folder (with raw/), not {dataset!r}")
        train_queries, train_qrels = scifact_claims(local / "raw", "train")
        held_out = ds.judged_queries()
    elif queries == "synthetic":
        from rankwise.train.config import SyntheticQueriesConfig
        from rankwise.train.synthetic import synthetic_queries

        train_queries, train_qrels = synthetic_queries(ds.name, ds.docs, synthetic or SyntheticQueriesConfig(), seed)
        held_out = ds.judged_queries()
    else:
        train_queries = read_topics(queries)
        train_qrels = read_qrels(qrels) if qrels else {}
        held_out = ds.judged_queries()
    if not unjudged:
        train_queries = {q: t for q, t in train_queries.items() if q in train_qrels}
    train_queries = drop_held_out(train_queries, held_out)
    if queries == "synthetic" and first_stage == "bm25":  # a shipped BM25 run lacks the generated queries
        run = cached_bm25_run(ds, train_queries, depth)
    else:
        run = first_stage_run(ds, first_stage, train_queries, depth)
    return TrainingSource(train_queries, train_qrels, ds.docs, run, held_out)


def drop_held_out(train: Mapping[str, str], held_out: Mapping[str, str]) -> dict[str, str]:
    """``train`` without the queries that are also held out, by id or by text (SciFact's train and test
    splits share two claims under different ids); a warning says how many were dropped."""
    texts = {t.strip().lower() for t in held_out.values()}
    kept = {q: t for q, t in train.items() if q not in held_out and t.strip().lower() not in texts}
    if len(kept) < len(train):
        logger.warning("dropped %d training queries that are also evaluation queries (leak-free split)",
                       len(train) - len(kept))
    return kept


# -- groups ------------------------------------------------------------------------------------------------

def _rng(seed: int, qid: str) -> random.Random:
    return random.Random(int(hashlib.sha1(f"{seed}:{qid}".encode()).hexdigest()[:12], 16))


def build_groups(source: TrainingSource, group_size: int = 8, groups_per_query: int = 4, depth: int = 100,
                 min_grade: int = 1, seed: int = 13, qids: Iterable[str] | None = None,
                 unjudged: bool = False, max_positives: int = 1) -> list[Group]:
    """One group per positive (best grades first, at most ``groups_per_query``), negatives sampled from the
    first stage's top ``depth`` among documents graded below ``min_grade`` (unjudged count as 0).

    Queries without a positive that has text, or with fewer than ``group_size - 1`` negatives, are skipped;
    with ``unjudged``, a query without any judgment instead gets groups led by the first stage's top
    ``groups_per_query`` documents, the others sampled from its top ``depth``, every label 0 (for a teacher).
    With ``max_positives`` > 1, each group also holds 0 to ``max_positives - 1`` of the query's other positives
    (the count drawn per group), right after its lead positive, so groups differ in how many documents are
    relevant (targets that grade every document, such as a groupwise list, then cannot be learned by count).
    """
    groups: list[Group] = []
    skipped = 0
    for qid in (qids if qids is not None else source.queries):
        judged = source.qrels.get(qid, {})
        ranked = list(source.run.get(qid, {}))[:depth]
        rank = {d: i + 1 for i, d in enumerate(ranked)}
        if unjudged and not judged:
            pool = [d for d in ranked if d in source.docs]
            positives = pool[:groups_per_query] if len(pool) >= group_size else []
        else:
            positives = sorted((d for d, g in judged.items() if g >= min_grade and d in source.docs),
                               key=lambda d: (-judged[d], rank.get(d, depth + 1)))[:groups_per_query]
            pool = [d for d in ranked if judged.get(d, 0) < min_grade and d in source.docs]
        if not positives or len(pool) < group_size - 1:
            skipped += 1
            continue
        rng = _rng(seed, qid)
        others = [d for d, g in judged.items() if g >= min_grade and d in source.docs]
        for pos in positives:
            extra = _extra_positives(rng, [d for d in others if d != pos], max_positives, group_size)
            negatives = rng.sample([d for d in pool if d != pos], group_size - 1 - len(extra))
            docids = (pos, *extra, *negatives)
            groups.append(Group(qid, source.queries[qid], docids,
                                tuple(doc_text(source.docs[d]) for d in docids),
                                tuple(float(max(judged.get(d, 0), 0)) for d in docids),
                                rank.get(pos, depth + 1)))
    if skipped:
        logger.info("skipped %d queries without a positive or with too few negatives", skipped)
    return groups


def _extra_positives(rng: random.Random, others: list[str], max_positives: int, group_size: int) -> list[str]:
    """Up to ``max_positives - 1`` more positives for one group (none, and no draw, when it is 1)."""
    if max_positives <= 1 or not others:
        return []
    count = rng.randint(0, min(max_positives - 1, len(others), group_size - 2))
    return rng.sample(sorted(others), count)


def split_queries(qids: Sequence[str], dev_fraction: float, seed: int = 13) -> tuple[list[str], list[str]]:
    """Train / dev query ids: a stable hash of each qid decides, so a query is wholly on one side."""
    if dev_fraction <= 0:
        return list(qids), []
    ordered = sorted(qids, key=lambda q: hashlib.sha1(f"{seed}:{q}".encode()).hexdigest())
    n_dev = max(1, round(len(ordered) * dev_fraction)) if len(ordered) > 1 else 0
    dev = set(ordered[:n_dev])
    return [q for q in qids if q not in dev], [q for q in qids if q in dev]


def teacher_labels(groups: Sequence[Group], teacher: Run, scale: float = 1.0) -> list[tuple[float, ...]]:
    """Teacher scores per group document; a document the teacher did not rank gets its lowest score for
    that query. Groups of queries the teacher lacks are an InputError."""
    out = []
    for g in groups:
        scores = teacher.get(g.qid)
        if not scores:
            raise InputError(f"the teacher run has no scores for training query {g.qid}")
        floor = min(scores.values())
        out.append(tuple(scale * scores.get(d, floor) for d in g.docids))
    return out


@dataclass(frozen=True)
class TrainingSplit:
    """What a training run learns from: the source, its groups (train queries only) and the query split."""

    source: TrainingSource
    groups: list[Group]
    train_qids: list[str]
    dev_qids: list[str]


def training_split(data, group_size: int) -> TrainingSplit:
    """The source a ``DataConfig`` names, split by query, grouped into lists of ``group_size`` (InputError
    when no query yields a group)."""
    source = load_source(data.dataset, data.queries, data.qrels, data.first_stage, data.depth, data.synthetic,
                         data.seed, data.unjudged)
    for name in data.held_out:  # evaluation sets named in the config: never trained on
        held = load_dataset(name).judged_queries()
        source.queries = drop_held_out(source.queries, held)
        source.held_out = {**source.held_out, **held}
    qids = list(source.queries)[: data.max_queries] if data.max_queries else list(source.queries)
    judged = [q for q in qids if source.qrels.get(q)]  # dev queries are judged: they are evaluated
    train_qids, dev_qids = split_queries(judged, data.dev_fraction, data.seed)
    train_qids += [q for q in qids if not source.qrels.get(q)]
    groups = build_groups(source, group_size, data.groups_per_query, data.depth, data.min_grade, data.seed,
                          train_qids, data.unjudged, data.max_positives)
    if not groups:
        raise InputError("no training groups: no query has a positive with text and enough negatives")
    return TrainingSplit(source, groups, train_qids, dev_qids)
