"""Synthetic training queries (InPars-style): cleaning, filtering, caching, and a real generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.train.config import SyntheticQueriesConfig
from rankwise.train.synthetic import (
    clean_query,
    filter_queries,
    sample_documents,
    synthetic_queries,
)
from rankwise.types import Document

DOCS = {
    "bread": Document("bread", "Yeast ferments the sugars in dough and releases carbon dioxide, so bread rises in "
                               "the oven while it bakes and the crumb fills with small bubbles of gas " * 2),
    "plants": Document("plants", "Plants make their food from light: photosynthesis in the leaves turns water and "
                                 "carbon dioxide into sugar and oxygen with the energy of sunlight " * 2),
    "paris": Document("paris", "Paris is the capital and largest city of France, on the river Seine, with more "
                               "than two million residents in the city proper and many museums " * 2),
    "short": Document("short", "Too short to ask about."),
}


@pytest.mark.parametrize("raw, clean", [
    ('"why does bread rise"\nDocument: ...', "why does bread rise"),
    ("Query: capital of france.", "capital of france"),
    ("  relevant query: how plants make food ", "how plants make food"),
    ('Search for "What does yeast ferment?', "What does yeast ferment?"),
    ('"Search for the molecular mechanisms of yeast"', "the molecular mechanisms of yeast"),
    ("", ""),
])
def test_clean_query(raw: str, clean: str) -> None:
    assert clean_query(raw) == clean


def test_sampling_is_seeded_and_skips_short_documents() -> None:
    assert sample_documents(DOCS, 10, seed=1) == sample_documents(DOCS, 10, seed=1)
    assert sorted(sample_documents(DOCS, 10, seed=1)) == ["bread", "paris", "plants"]
    assert len(sample_documents(DOCS, 2, seed=1)) == 2


def test_filter_drops_empty_duplicate_and_off_topic_queries() -> None:
    generated = {"bread": "why does bread rise", "plants": "why does bread rise",  # a duplicate
                 "paris": "capital of france", "short": "x", "long": " ".join(["word"] * 17)}
    topics, qrels, dropped = filter_queries(DOCS, generated, filter_top_k=None)
    assert topics == {"syn-bread": "why does bread rise", "syn-paris": "capital of france"}
    assert qrels == {"syn-bread": {"bread": 1}, "syn-paris": {"paris": 1}}
    assert dropped["duplicate"] == 1 and dropped["empty or one word"] == 1 and dropped["copied (too long)"] == 1
    # with the BM25 filter, a query that does not retrieve its own document goes
    topics, _, dropped = filter_queries(DOCS, {"bread": "capital city of france", "paris": "capital of france"}, 1)
    assert topics == {"syn-paris": "capital of france"} and dropped["source not in BM25 top k"] == 1


def test_a_real_model_writes_queries_once_then_the_cache_answers(tmp_path: Path, monkeypatch) -> None:
    settings = SyntheticQueriesConfig(model="smollm2-135m", num_documents=3, filter_top_k=None, max_new_tokens=16)
    topics, qrels = synthetic_queries("tiny", DOCS, settings, seed=1, cache=tmp_path)
    assert set(qrels) == set(topics) and all(len(q.split()) >= 2 for q in topics.values())
    assert all(qid == f"syn-{next(iter(judged))}" for qid, judged in qrels.items())
    assert len(list(tmp_path.glob("tiny-*.json"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr("rankwise.llm.load_backend", no_model)
    assert synthetic_queries("tiny", DOCS, settings, seed=1, cache=tmp_path) == (topics, qrels)


def test_training_source_from_synthetic_queries(tmp_path: Path, monkeypatch) -> None:
    import json

    from rankwise.train.groups import build_groups, load_source

    monkeypatch.setattr("rankwise.train.synthetic.cache_root", lambda: tmp_path / "synthetic")
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "title": "", "text": doc.text})
                                                 for d, doc in DOCS.items()) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "test1", "text": "capital of france"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\ntest1\tparis\t1\n")
    settings = SyntheticQueriesConfig(model="smollm2-135m", num_documents=3, filter_top_k=None, max_new_tokens=16,
                                      engine="transformers")
    source = load_source(str(root), "synthetic", synthetic=settings, seed=1)
    assert len(list((tmp_path / "synthetic").glob("*.json"))) == 1
    assert source.queries and all(q.startswith("syn-") for q in source.queries)
    assert source.held_out == {"test1": "capital of france"}  # the test queries are never trained on
    assert set(source.run) == set(source.queries)  # BM25 negatives retrieved for the generated queries
    groups = build_groups(source, group_size=2, depth=4)
    assert groups and all(g.labels == (1.0, 0.0) for g in groups)
