"""BEIR directories: the real SciFact copy and small hand-made directories."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rankwise.data import load_beir
from rankwise.errors import InputError
from rankwise.types import Document


def test_load_beir_scifact(scifact: Path) -> None:
    data = load_beir(scifact)
    assert len(data.queries) == 300
    assert len(data.corpus) == 5183
    assert sum(len(j) for j in data.qrels.values()) == 339
    assert set(data.qrels) == set(data.queries)
    doc = data.corpus["4983"]
    assert doc.title.startswith("Microstructural development of human newborn cerebral white matter")
    assert doc.text.startswith("Alterations of the architecture")
    assert data.queries["1"] == "0-dimensional biomaterials show inductive properties."
    judged_docs = {d for j in data.qrels.values() for d in j}
    assert judged_docs <= set(data.corpus)


def _beir_dir(root: Path, corpus: list[str], queries: list[dict], qrels: str, split: str = "test") -> Path:
    (root / "qrels").mkdir(parents=True)
    with gzip.open(root / "corpus.jsonl.gz", "wt") as f:
        f.write("".join(line + "\n" for line in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


def test_only_queries_judged_in_the_split_are_kept(tmp_path: Path) -> None:
    d = _beir_dir(tmp_path, ['{"_id": "d1", "title": "T", "text": "one"}', '{"_id": 2, "text": "two"}'],
                  [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}], "q2\td1\t1\n", split="dev")
    data = load_beir(d, split="dev")
    assert data.queries == {"q2": "second"}
    assert data.qrels == {"q2": {"d1": 1}}
    assert data.corpus == {"d1": Document("d1", "one", "T"), "2": Document("2", "two", "")}
    with pytest.raises(InputError, match=r"qrels: no qrels for split 'test' \(found: dev\)"):
        load_beir(d)


def test_bad_corpus_line_is_named(tmp_path: Path) -> None:
    d = _beir_dir(tmp_path, ['{"_id": "d1", "text": "one"}', '{"_id": "d2", "title": "no text"}'],
                  [{"_id": "q1", "text": "first"}], "q1\td1\t1\n")
    with pytest.raises(InputError, match=r"corpus.jsonl.gz:2: missing 'text'"):
        load_beir(d)


def test_judged_query_without_text_and_missing_dir(tmp_path: Path) -> None:
    d = _beir_dir(tmp_path / "b", ['{"_id": "d1", "text": "one"}'], [{"_id": "q1", "text": "first"}],
                  "q1\td1\t1\nq9\td1\t1\n")
    with pytest.raises(InputError, match=r"test.tsv: 1 judged queries have no text in queries.jsonl, e.g. q9"):
        load_beir(d)
    with pytest.raises(InputError, match="nowhere: no such directory"):
        load_beir(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a BEIR directory"):
        load_beir(tmp_path)
