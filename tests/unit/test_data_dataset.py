"""load_dataset: shared folders by path and alias, error cases, and ir_datasets over local files."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from rankwise.data import (
    Dataset,
    LazyDocs,
    irds,
    load_dataset,
    load_ir_dataset,
    read_run,
    requests_from_run,
)
from rankwise.errors import InputError, RankwiseError
from rankwise.types import Document

RETRIEVERS = ["bm25", "bm25_rm3", "d_bert_kd_tasb", "open_ai_ada2", "splade_p_p_ensemble_distil"]


@pytest.fixture
def shared_root(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RANKWISE_DATA", str(shared_data))
    return shared_data


def test_dl19_by_alias(shared_root: Path) -> None:
    ds = load_dataset("dl19")
    assert ds.name == "dl19"
    assert len(ds.queries) == 43 and len(ds.judged_queries()) == 43
    assert sum(len(j) for j in ds.qrels.values()) == 9260
    assert sorted(ds.runs) == RETRIEVERS and sorted(ds.candidates) == RETRIEVERS
    assert ds.runs["bm25"] == shared_root / "trec-dl-2019-passage" / "run.bm25.top100.trec"
    assert isinstance(ds.docs, LazyDocs)
    run = read_run(ds.runs["d_bert_kd_tasb"])
    assert all(docid in ds.docs for docs in run.values() for docid in docs)
    assert "LazyDocs(" in repr(ds)


def test_dl20_keeps_all_topics_but_judges_54(dl20: Path) -> None:
    ds = load_dataset(str(dl20))
    assert ds.name == "trec-dl-2020-passage"
    assert len(ds.queries) == 200
    judged = ds.judged_queries()
    assert len(judged) == 54 and set(judged) == set(ds.qrels)


def test_requests_from_candidates_equal_requests_from_run(shared_root: Path) -> None:
    ds = load_dataset("dl19")
    from_candidates = ds.requests("bm25", top_k=10)
    from_run = requests_from_run(read_run(ds.runs["bm25"]), ds.queries, ds.docs, top_k=10)
    assert from_candidates == from_run
    assert all(len(r.candidates) == 10 for r in from_candidates)
    with pytest.raises(InputError, match=r"dataset dl19 has no first stage 'bm99' \(it has: bm25, "):
        ds.requests("bm99")


def test_scifact_alias_is_a_beir_dataset(shared_root: Path) -> None:
    ds = load_dataset("scifact")
    assert ds.name == "scifact"
    assert len(ds.queries) == 300 and len(ds.docs) == 5183
    assert ds.runs == {} and ds.candidates == {}
    with pytest.raises(InputError, match="has no first stage .bm25. \\(it has: none;"):
        ds.requests("bm25")


def test_unknown_file_and_non_dataset_paths(tmp_path: Path, dl19: Path) -> None:
    with pytest.raises(InputError, match=r"^no/such/thing: no such file, directory or dataset id"):
        load_dataset("no/such/thing")
    with pytest.raises(InputError, match="is a file, expected a dataset directory"):
        load_dataset(str(dl19 / "run.bm25.top100.trec"))
    with pytest.raises(InputError, match="not a dataset directory"):
        load_dataset(str(tmp_path))
    (tmp_path / "topics.a.tsv").write_text("1\tq\n")
    (tmp_path / "topics.b.tsv").write_text("1\tq\n")
    with pytest.raises(InputError, match="expected one topics file, found topics.a.tsv, topics.b.tsv"):
        load_dataset(str(tmp_path))


def test_trec_folder_without_candidates_has_no_docs(tmp_path: Path) -> None:
    (tmp_path / "topics.tsv").write_text("1\tfirst\n2\tsecond\n")
    (tmp_path / "qrels.txt").write_text("1 0 D1 1\n")
    (tmp_path / "run.mine.trec").write_text("1 Q0 D1 1 1.0 t\n")
    ds = load_dataset(str(tmp_path))
    assert ds.docs is None and ds.runs == {"mine": tmp_path / "run.mine.trec"}
    assert ds.judged_queries() == {"1": "first"}
    with pytest.raises(InputError, match="has no document texts to pair with run 'mine'"):
        ds.requests("mine")
    (tmp_path / "qrels.txt").write_text("1 0 D1 1\n3 0 D1 1\n")
    with pytest.raises(InputError, match="qrels.txt: 1 judged queries are not in the topics, e.g. 3"):
        load_dataset(str(tmp_path))


@pytest.fixture
def tiny_ir_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A dataset registered with ir_datasets' own classes over local files (no download)."""
    ir_datasets = pytest.importorskip("ir_datasets")
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "home"))
    (tmp_path / "docs.tsv").write_text("d1\tfirst doc\nd2\tsecond doc\n")
    (tmp_path / "queries.tsv").write_text("q1\thello\nq2\tworld\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 2\nq2 0 d1 0\n")
    dataset_id = f"rankwise-test/{uuid.uuid4().hex}"
    ir_datasets.registry.register(dataset_id, ir_datasets.create_dataset(
        docs_tsv=tmp_path / "docs.tsv", queries_tsv=tmp_path / "queries.tsv", qrels_trec=tmp_path / "qrels.txt"))
    return dataset_id


def test_ir_datasets_id(tiny_ir_dataset: str) -> None:
    ds = load_dataset(tiny_ir_dataset)
    assert isinstance(ds, Dataset) and ds.name == tiny_ir_dataset
    assert ds.queries == {"q1": "hello", "q2": "world"}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert ds.docs["d2"] == Document("d2", "second doc")
    assert len(ds.docs) == 2 and list(ds.docs) == ["d1", "d2"]
    assert "nope" not in ds.docs
    [request] = requests_from_run({"q2": {"d2": 1.0}}, ds.queries, ds.docs)
    assert request.candidates[0].text == "second doc"


def test_ir_datasets_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ir_datasets")
    with pytest.raises(InputError, match="no-such/dataset-id: unknown ir_datasets id"):
        load_ir_dataset("no-such/dataset-id")
    monkeypatch.setattr(irds, "installed", lambda: False)
    with pytest.raises(RankwiseError, match=r"pip install 'rankwise\[irds\]'"):
        load_ir_dataset("msmarco-passage/trec-dl-2019/judged")
    with pytest.raises(InputError, match=r"no such file, directory or dataset id \(ir_datasets ids need: pip"):
        load_dataset("msmarco-passage/trec-dl-2019/judged")


def test_folder_names_resolve_under_shared_data_next_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shared" / "data" / "my-trec"
    folder.mkdir(parents=True)
    (folder / "topics.mine.tsv").write_text("1\tfirst\n")
    (folder / "qrels.mine.txt").write_text("1 0 D1 2\n")
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv("RANKWISE_DATA", raising=False)
    ds = load_dataset("my-trec")
    assert ds.name == "my-trec" and ds.qrels == {"1": {"D1": 2}}
    monkeypatch.setenv("RANKWISE_DATA", str(tmp_path))
    with pytest.raises(InputError, match="my-trec: no such file, directory or dataset id"):
        load_dataset("my-trec")
