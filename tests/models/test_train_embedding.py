"""Embedding training (E2Rank's two stages): a tiny randomly initialised bi-encoder trains each stage on a
tiny BEIR folder; the result reranks as embedding.e2rank and embedding.cosine and retrieves as a dense
first stage; resume skips a finished stage; the pseudo query is the method's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rankwise.errors import InputError
from rankwise.train.config import parse_config
from rankwise.train.crossencoder_trainer import CONFIG_FILE, RESULTS_FILE
from rankwise.train.embedding_trainer import (
    PLOT_FILE,
    STAGE_FILE,
    ListwiseRankNetLoss,
    contrastive_dataset,
    listwise_dataset,
    load_embedder,
    pseudo_queries,
    ranknet,
    train_embedding,
)
from rankwise.train.groups import Group, load_source
from rankwise.types import Candidate, Query, Request

TOPICS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer and mean pooling, as a SentenceTransformer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rankwise.llm.models import resolve_model

    try:
        tok = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").source))
    except (OSError, ValueError) as err:  # pragma: no cover - model package missing
        pytest.skip(f"minilm-l6 not installed: {err}")
    raw = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(raw)
    tok.save_pretrained(raw)
    path = tmp_path_factory.mktemp("tiny-encoder")
    transformer = Transformer(str(raw), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu").save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory) -> Path:
    """12 queries over 4 topics; each query's relevant document shares its topic words."""
    root = tmp_path_factory.mktemp("tiny-beir")
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t, words in enumerate(TOPICS):
        for i in range(6):
            corpus.append({"_id": f"t{t}d{i}", "title": "", "text": f"{words} passage {i} {TOPICS[(t + 1) % 4]}"})
        for q in range(3):
            queries.append({"_id": f"t{t}q{q}", "text": f"{words} {q}"})
            qrels.append(f"t{t}q{q}\tt{t}d{q}\t{1 + q % 2}")
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))


def _config(model: Path, data: Path, stages: str = "both", **training) -> dict:
    return {"kind": "embedding", "model": str(model),
            "data": {"dataset": str(data), "group_size": 3, "depth": 20, "dev_fraction": 0.0, "seed": 1},
            "embedding": {"stages": stages, "m": 2},
            "training": {"max_steps": 2, "batch_size": 2, "max_length": 64, "logging_steps": 1, "save_steps": 1,
                         "dtype": "float32", **training}}


def _groups() -> list[Group]:
    return [Group("q1", "query one", ("a", "b", "c"), ("A", "B", "C"), (2.0, 0.0, 1.0), 1),
            Group("q2", "query two", ("d", "e", "f"), ("D", "E", "F"), (1.0, 0.0, 0.0), 3)]


def test_each_stage_reads_its_columns():
    contrastive = contrastive_dataset(_groups())
    assert contrastive.column_names == ["query", "positive", "negative_1", "negative_2"]
    listwise = listwise_dataset(_groups(), {"q1": "P1", "q2": "P2"})
    assert listwise.column_names == ["query", "pseudo_query", "doc_0", "doc_1", "doc_2", "label"]
    assert listwise["pseudo_query"] == ["P1", "P2"] and listwise["label"][0] == [2.0, 0.0, 1.0]


def test_ranknet_counts_only_ordered_pairs():
    import torch

    labels = torch.tensor([[2.0, 0.0, 1.0]])
    right, wrong = torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[1.0, 3.0, 2.0]])
    assert ranknet(right, labels) < ranknet(wrong, labels)
    # three ordered pairs (2>0, 2>1, 1>0) of margins 2, 1, 1
    expected = torch.nn.functional.softplus(-torch.tensor([2.0, 1.0, 1.0])).mean().item()
    assert ranknet(right, labels).item() == pytest.approx(expected)
    assert ranknet(right, torch.zeros(1, 3)).item() == 0.0


def test_the_pseudo_query_is_the_methods_own(tiny_encoder, tiny_beir):
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend
    from rankwise.methods.embedding import E2Rank

    source = load_source(str(tiny_beir), depth=20)
    method = E2Rank(SentenceTransformerBackend.of(load_embedder(str(tiny_encoder))), m=2)
    qid = next(iter(source.queries))
    top = list(source.run[qid])[:2]
    head = [Candidate(d, source.docs[d].text) for d in top]
    pseudo = pseudo_queries(source, [qid], method)[qid]
    assert pseudo == method.pseudo_query(Query(qid, source.queries[qid]), head)
    assert source.queries[qid] in pseudo and all(source.docs[d].text in pseudo for d in top)


def test_the_listwise_loss_is_finite_and_has_gradients(tiny_encoder):
    import torch

    model = load_embedder(str(tiny_encoder))
    dataset = listwise_dataset(_groups(), {"q1": "P1 A B", "q2": "P2 D E"})
    columns = [c for c in dataset.column_names if c != "label"]
    features = [model.tokenize(dataset[c]) for c in columns]
    value = ListwiseRankNetLoss(model)(features, torch.tensor(dataset["label"]))
    value.backward()
    assert torch.isfinite(value)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_both_stages_train_and_the_result_reranks_and_retrieves(tiny_encoder, tiny_beir, tmp_path):
    from rankwise.data import load_dataset
    from rankwise.pipeline import load_reranker, run
    from rankwise.retrieve.dense import DenseRetriever

    out = tmp_path / "model"
    results = train_embedding(parse_config(_config(tiny_encoder, tiny_beir)), out)
    assert [s["stage"] for s in results["stages"]] == ["contrastive", "listwise"]
    assert results["steps"] == 4 and all(len(s["log"]) == 2 for s in results["stages"])
    assert (out / CONFIG_FILE).is_file() and (out / RESULTS_FILE).is_file() and (out / PLOT_FILE).is_file()
    assert (out / "contrastive" / STAGE_FILE).is_file() and (out / "checkpoints" / "listwise").is_dir()
    request = Request(Query("q", "bread yeast"), tuple(Candidate(f"d{i}", f"{TOPICS[i % 4]} {i}") for i in range(5)))
    for method, options in (("embedding.e2rank", {"m": 2, "query_weight": 0.0}), ("embedding.cosine", {})):
        ranking = run(load_reranker(method, str(out), cache=False, **options), [request]).rankings["q"]
        assert sorted(c.docid for c in ranking.candidates) == [f"d{i}" for i in range(5)]
    ds = load_dataset(str(tiny_beir))
    retrieved = DenseRetriever(str(out), show_progress=False).index(ds.docs).retrieve({"q": "bread"}, top_k=3)
    assert len(retrieved["q"]) == 3


def test_resume_skips_the_finished_stage_and_continues_the_next(tiny_encoder, tiny_beir, tmp_path):
    out = tmp_path / "model"
    config = parse_config(_config(tiny_encoder, tiny_beir))
    train_embedding(config, out)
    config.training.max_steps = 3
    resumed = train_embedding(config, out, resume=True)
    contrastive, listwise = resumed["stages"]
    assert contrastive["steps"] == 2 and contrastive["resumed_from"] is None  # read back, not retrained
    assert listwise["steps"] == 3 and listwise["resumed_from"].endswith("checkpoint-2")


@pytest.mark.parametrize("stage", ["contrastive", "listwise"])
def test_either_stage_trains_alone(tiny_encoder, tiny_beir, tmp_path, stage):
    results = train_embedding(parse_config(_config(tiny_encoder, tiny_beir, stage, max_steps=1)), tmp_path / "m")
    assert [s["stage"] for s in results["stages"]] == [stage] and results["steps"] == 1
    assert not (tmp_path / "m" / stage).exists()


def test_the_loss_plot_draws_each_stage_after_the_other(tmp_path):
    from rankwise.train.embedding_trainer import plot_losses

    stages = [{"stage": "contrastive", "steps": 4, "log": [{"step": 2, "loss": 2.0}, {"step": 4, "loss": 1.0}]},
              {"stage": "listwise", "steps": 2, "log": [{"step": 2, "loss": 0.5}]}]
    assert plot_losses(stages, tmp_path / "loss.svg") == "loss.svg"
    svg = (tmp_path / "loss.svg").read_text()
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 3 and "(0..6)" in svg
    assert plot_losses([{"stage": "listwise", "steps": 0, "log": []}], tmp_path / "none.svg") is None


@pytest.mark.parametrize("field, value, message", [
    ("stages", "all", "embedding.stages"), ("m", 0, "embedding.m"), ("scale", 0.0, "embedding.scale"),
    ("contrastive_share", 1.0, "embedding.contrastive_share"), ("infonce_weight", -1.0, "embedding.infonce_weight")])
def test_bad_embedding_fields_are_named(field, value, message):
    with pytest.raises(InputError, match=message):
        parse_config({"kind": "embedding", "embedding": {field: value}})


def test_max_minutes_is_shared_between_the_stages():
    from rankwise.train.embedding_trainer import _stage_plan

    config = parse_config({"kind": "embedding", "embedding": {"contrastive_share": 0.25},
                           "training": {"max_minutes": 8}})
    assert _stage_plan(config) == [("contrastive", 2.0), ("listwise", 6.0)]


def test_the_cli_trains_an_embedding_model(tiny_encoder, tiny_beir, tmp_path, capsys):
    from rankwise.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_encoder, tiny_beir, "listwise", max_steps=1)))
    try:
        main(["train", str(config), "--output", str(tmp_path / "out")])
    except SystemExit as exit_:
        assert not exit_.code
    assert "train embedding" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / RESULTS_FILE).read_text())["steps"] == 1


@pytest.mark.slow
def test_minilm_trains_on_scifact_claims_and_reranks(tmp_path):
    """all-MiniLM-L6-v2, both stages for a few steps on 8 SciFact training claims; it then reranks SciFact
    test queries as embedding.e2rank."""
    from rankwise.data import load_dataset, read_run, requests_from_run
    from rankwise.pipeline import load_reranker, run

    ds = load_dataset("scifact")
    config = {"kind": "embedding", "model": "minilm-l6",
              "data": {"dataset": "scifact", "queries": "scifact-train", "max_queries": 8, "dev_fraction": 0.0},
              "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "save_steps": 50}}
    out = tmp_path / "minilm"
    results = train_embedding(parse_config(config), out)
    assert results["steps"] == 4 and results["train_queries"] == 8
    bm25 = read_run(ds.runs["bm25"]) if "bm25" in ds.runs else None
    if bm25 is None:
        from rankwise.train.groups import cached_bm25_run

        bm25 = cached_bm25_run(ds, dict(list(ds.judged_queries().items())[:3]), 20)
    requests = requests_from_run({q: bm25[q] for q in list(bm25)[:3]}, ds.queries, ds.docs, top_k=20)
    result = run(load_reranker("embedding.e2rank", str(out), cache=False, query_weight=0.0), requests)
    assert len(result.rankings) == 3
