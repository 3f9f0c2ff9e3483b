"""rankwise.retrieve.bm25: ranking, persistence, and the BEIR SciFact reproduction."""

from __future__ import annotations

import json

import pytest

from rankwise.data import load_beir
from rankwise.errors import InputError
from rankwise.eval import evaluate
from rankwise.retrieve import BM25Retriever, retrieve_candidates
from rankwise.types import Document

DOCS = {
    "d1": Document("d1", "Cats sleep most of the day on warm windowsills.", "Cats"),
    "d2": Document("d2", "Dogs are running fast in the park.", "Dogs"),
    "d3": Document("d3", "A bird in the hand is worth two in the bush."),
    "d4": Document("d4", "Running shoes for marathon runners.", "Shoes"),
}


@pytest.fixture
def bm25() -> BM25Retriever:
    return BM25Retriever(show_progress=False).index(DOCS)


def test_ranks_matching_documents_only(bm25: BM25Retriever) -> None:
    run = bm25.retrieve({"q1": "the running dog", "q2": "cat", "q3": "the of", "q4": "zebra"}, top_k=10)
    assert list(run["q1"]) == ["d2", "d4"]  # stems: run, dog
    assert list(run["q2"]) == ["d1"]  # title and text both count
    assert run["q3"] == {} and run["q4"] == {}  # only stopwords / unknown words: nothing matches
    scores = list(run["q1"].values())
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_top_k_cuts_and_may_exceed_the_corpus(bm25: BM25Retriever) -> None:
    assert len(bm25.retrieve({"q": "running dogs cats bird"}, top_k=1)["q"]) == 1
    assert len(bm25.retrieve({"q": "running dogs cats bird"}, top_k=1000)["q"]) == 4
    with pytest.raises(InputError, match="top_k"):
        bm25.retrieve({"q": "cat"}, top_k=0)


def test_save_and_load_give_the_same_run(bm25: BM25Retriever, tmp_path) -> None:
    bm25.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "rankwise.json").read_text())
    assert meta == {"retriever": "bm25", "k1": 0.9, "b": 0.4, "method": "lucene", "stemmer": "porter",
                    "stopwords": "en"}
    loaded = BM25Retriever.load(tmp_path / "idx", show_progress=False)
    queries = {"a": "running", "b": "warm cats", "c": "bush bird hand"}
    assert loaded.retrieve(queries, 3) == bm25.retrieve(queries, 3)


def test_load_rejects_what_is_not_an_index(tmp_path) -> None:
    with pytest.raises(InputError, match="not a rankwise index"):
        BM25Retriever.load(tmp_path)
    (tmp_path / "rankwise.json").write_text('{"retriever": "dense", "model": "m"}')
    with pytest.raises(InputError, match="built by retriever 'dense'"):
        BM25Retriever.load(tmp_path)


def test_bad_settings_and_empty_corpus() -> None:
    with pytest.raises(InputError, match="unknown stemmer 'klingon'"):
        BM25Retriever(stemmer="klingon")
    with pytest.raises(InputError, match="no documents"):
        BM25Retriever().index({})


def test_candidates_carry_the_document_text(bm25: BM25Retriever) -> None:
    run, requests = retrieve_candidates(bm25, {"q": "running"}, DOCS, top_k=5)
    (request,) = requests
    assert request.query.text == "running"
    assert [c.docid for c in request.candidates] == list(run["q"])
    assert request.candidates[0].text == DOCS[request.candidates[0].docid].text
    assert request.candidates[0].title == DOCS[request.candidates[0].docid].title


def test_scifact_reproduces_beir_bm25(scifact) -> None:
    """BEIR's published BM25 on SciFact is nDCG@10 0.665; ours (Anserini's settings) must be within 0.01."""
    data = load_beir(scifact)
    run = BM25Retriever(show_progress=False).index(data.corpus).retrieve(data.queries, top_k=100)
    assert len(run) == 300
    scores = evaluate(run, data.qrels, ["nDCG@10", "R@100"])
    assert abs(scores["nDCG@10"] - 0.665) <= 0.01
    assert round(scores["nDCG@10"], 4) == 0.6713 and round(scores["R@100"], 4) == 0.9187


def test_tokenize_shows_the_analysis() -> None:
    assert BM25Retriever().tokenize(["The Runners were running!"]) == [["runner", "were", "run"]]
