"""Synthetic training queries for unlabeled corpora (InPars / DUQGen style): an LLM writes the query each
sampled document answers; that document is the query's positive.

Filtering (as InPars-v2 and Promptagator do, with BM25 in place of their rerankers): a generated query is
kept only when BM25 over the corpus ranks its source document within the top ``filter_top_k`` — a query
that does not find its own document is probably off-topic or too generic. Empty, duplicate and one-word
queries, and long ones (a sentence copied from the document), are dropped too. The result is cached per
(corpus, documents, model, prompt, settings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from pathlib import Path
from typing import Mapping

from rankwise.data import Qrels
from rankwise.types import Document

logger = logging.getLogger(__name__)

PROMPT = "synthetic.query"


def clean_query(text: str) -> str:
    """The first line of a generation, without quotes, a "Query:" label or trailing punctuation."""
    line = text.strip().splitlines()[0].strip(" \"'`") if text.strip() else ""
    line = re.sub(r"^((relevant |search )?query\s*:|search( engine)?( query)?( for)?\s*:?)\s*", "", line,
                  flags=re.IGNORECASE)
    return line.strip(" \"'`").rstrip(" .")


def sample_documents(docs: Mapping[str, Document], n: int, seed: int, min_words: int = 20) -> list[str]:
    """``n`` document ids, seeded, among documents of at least ``min_words`` words (too short to ask about)."""
    eligible = sorted(d for d, doc in docs.items() if len(doc.text.split()) >= min_words)
    rng = random.Random(seed)
    return rng.sample(eligible, min(n, len(eligible)))


def generate_queries(docs: Mapping[str, Document], backend, docids: list[str], max_passage_tokens: int = 192,
                     max_new_tokens: int = 32) -> dict[str, str]:
    """docid -> the generated query (raw cleaned text, possibly empty), one batched generate call."""
    from rankwise.prompts import load_prompt
    from rankwise.train.groups import doc_text

    template = load_prompt(PROMPT)
    prompts = [backend.format_chat(template.render(passage=backend.truncate(doc_text(docs[d]), max_passage_tokens)))
               for d in docids]
    texts = backend.generate(prompts, max_new_tokens=max_new_tokens, stop=["\n"])
    return {d: clean_query(t) for d, t in zip(docids, texts)}


MAX_QUERY_WORDS = 16


def filter_queries(docs: Mapping[str, Document], generated: Mapping[str, str],
                   filter_top_k: int | None) -> tuple[dict[str, str], Qrels, dict[str, int]]:
    """Topics and qrels of the queries worth training on, and how many were dropped for what."""
    dropped = {"empty or one word": 0, "copied (too long)": 0, "duplicate": 0, "source not in BM25 top k": 0}
    kept: dict[str, str] = {}
    seen: set[str] = set()
    for docid, query in generated.items():
        key = query.lower()
        if len(query.split()) < 2:
            dropped["empty or one word"] += 1
        elif len(query.split()) > MAX_QUERY_WORDS:
            dropped["copied (too long)"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            kept[docid] = query
    if filter_top_k and kept:
        from rankwise.retrieve.bm25 import BM25Retriever

        run = BM25Retriever(show_progress=False).index(docs).retrieve(
            {f"syn-{d}": q for d, q in kept.items()}, top_k=filter_top_k)
        for docid in list(kept):
            if docid not in run.get(f"syn-{docid}", {}):
                dropped["source not in BM25 top k"] += 1
                del kept[docid]
    topics = {f"syn-{d}": q for d, q in kept.items()}
    qrels = {f"syn-{d}": {d: 1} for d in kept}
    return topics, qrels, dropped


def cache_root() -> Path:
    """Where generated query sets are kept (under rankwise's cache directory)."""
    from rankwise.llm.models import cache_dir

    return cache_dir() / "synthetic"


def synthetic_queries(dataset_name: str, docs: Mapping[str, Document], settings, seed: int,
                      cache: Path | None = None) -> tuple[dict[str, str], Qrels]:
    """Generate (or read back from the cache) filtered synthetic topics and qrels over ``docs``."""
    from rankwise.llm import load_backend

    key = hashlib.sha1(json.dumps([dataset_name, len(docs), settings.model, settings.num_documents,
                                   settings.filter_top_k, settings.max_passage_tokens, settings.max_new_tokens,
                                   seed, PROMPT], sort_keys=True).encode()).hexdigest()[:12]
    path = (cache or cache_root()) / f"{Path(dataset_name).name}-{key}.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored["topics"], stored["qrels"]
    docids = sample_documents(docs, settings.num_documents, seed)
    backend = load_backend(settings.model, engine=settings.engine, dtype=settings.dtype)
    logger.warning("generating %d synthetic queries with %s (once; cached in %s)", len(docids), settings.model, path)
    generated = generate_queries(docs, backend, docids, settings.max_passage_tokens, settings.max_new_tokens)
    topics, qrels, dropped = filter_queries(docs, generated, settings.filter_top_k)
    logger.warning("synthetic queries: %d kept of %d (dropped: %s)", len(topics), len(docids),
                   ", ".join(f"{n} {why}" for why, n in dropped.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": settings.model, "generated": generated, "dropped": dropped,
                                "topics": topics, "qrels": qrels}, indent=1), encoding="utf-8")
    return topics, qrels
