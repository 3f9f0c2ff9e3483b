"""Cross-encoder training: every objective trains a tiny BERT on a tiny BEIR folder; the CLI writes a
CrossEncoder directory, keeps the config beside it, resumes, and refuses to overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankwise.train.config import parse_config
from rankwise.train.crossencoder_trainer import (
    CONFIG_FILE,
    RESULTS_FILE,
    objective_dataset,
    objective_loss,
    train_crossencoder,
)
from rankwise.train.groups import Group

TOPICS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT cross-encoder with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rankwise.llm.models import resolve_model

    try:
        tok = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").source))
    except Exception as err:  # pragma: no cover - model package missing
        pytest.skip(f"minilm-l6 not installed: {err}")
    path = tmp_path_factory.mktemp("tiny-ce")
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
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


def _config(model: Path, data: Path, objective: str, **training):
    values = {"model": str(model), "data": {"dataset": str(data), "group_size": 3, "depth": 20,
                                            "dev_fraction": 0.25, "seed": 1},
              "crossencoder": {"objective": objective},
              "training": {"max_steps": 2, "batch_size": 2, "max_length": 32, "logging_steps": 1,
                           "save_steps": 1, "dtype": "float32", **training}}
    return values


def _groups():
    return [Group("q1", "query one", ("a", "b", "c"), ("A", "B", "C"), (2.0, 0.0, 1.0), 1),
            Group("q2", "query two", ("d", "e", "f"), ("D", "E", "F"), (1.0, 0.0, 0.0), 3)]


def test_each_objective_reads_its_columns():
    groups = _groups()
    bce = objective_dataset("bce", groups)
    assert bce.column_names == ["query", "document", "label"] and bce["label"][:3] == [1.0, 0.0, 0.5]
    contrastive = objective_dataset("contrastive", groups)
    assert contrastive.column_names == ["query", "positive", "negative_1", "negative_2"]
    listwise = objective_dataset("lambda", groups)
    assert listwise["labels"] == [[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]] and listwise["docs"][1] == ["D", "E", "F"]
    teacher = {"q1": {"a": 3.0, "b": 1.0}, "q2": {"d": 2.0, "e": 0.5, "f": 1.0}}
    margin = objective_dataset("margin-mse", groups, teacher, 2.0)
    assert margin.column_names == ["query", "doc_0", "doc_1", "doc_2", "label"]
    assert margin["label"] == [[6.0, 2.0, 2.0], [4.0, 1.0, 2.0]]


def test_bce_weighs_positives_by_the_negatives_per_positive(tiny_ce):
    import torch

    from rankwise.train.crossencoder_trainer import (
        balancing_pos_weight,
        load_crossencoder,
    )

    dataset = objective_dataset("bce", _groups())  # labels 1, 0, .5 | 1, 0, 0: 3 positive pairs, 3 negative
    assert balancing_pos_weight(dataset) == 1.0
    assert balancing_pos_weight(dataset.select([0, 1, 4, 5])) == 3.0
    model = load_crossencoder(str(tiny_ce), 32)
    pair = [["query one"], ["A"]]
    plain = objective_loss("bce", model)(pair, torch.tensor([1.0]))
    weighted = objective_loss("bce", model, pos_weight=3.0)(pair, torch.tensor([1.0]))
    assert weighted.item() == pytest.approx(3 * plain.item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["bce", "contrastive", "listnet", "lambda", "ranknet", "margin-mse"])
def test_every_objective_computes_a_finite_loss_with_gradients(tiny_ce, objective):
    import torch

    from rankwise.train.crossencoder_trainer import load_crossencoder

    model = load_crossencoder(str(tiny_ce), 32)
    teacher = {"q1": {"a": 3.0, "b": 1.0}, "q2": {"d": 2.0}}
    dataset = objective_dataset(objective, _groups(), teacher)
    loss = objective_loss(objective, model)
    inputs = [dataset[c] for c in dataset.column_names if c not in ("label", "labels")]
    if "labels" in dataset.column_names:  # listwise: one tensor per query
        labels = [torch.tensor(row) for row in dataset["labels"]]
    else:
        labels = torch.tensor(dataset["label"]) if "label" in dataset.column_names else None
    value = loss(inputs, labels)
    value.backward()
    assert torch.isfinite(value)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.slow
def test_train_writes_a_crossencoder_directory_and_resumes(tiny_ce, tiny_beir, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    out = tmp_path / "model"
    config = parse_config(_config(tiny_ce, tiny_beir, "listnet", max_steps=2))
    results = train_crossencoder(config, out)
    assert results["steps"] == 2 and results["train_queries"] == 9 and results["dev_queries"] == 3
    assert results["dev"] is not None and len(results["log"]) == 2
    assert (out / CONFIG_FILE).is_file() and (out / "checkpoints" / "checkpoint-2").is_dir()
    assert CrossEncoder(str(out)).predict([("bread", "yeast")]).shape == (1,)
    config.training.max_steps = 3
    resumed = train_crossencoder(config, out, resume=True)
    assert resumed["steps"] == 3 and resumed["resumed_from"].endswith("checkpoint-2")


def test_curriculum_orders_batches_easy_to_hard(tiny_ce, tiny_beir, tmp_path):
    config = parse_config(_config(tiny_ce, tiny_beir, "bce", max_steps=1))
    config.crossencoder.curriculum = True
    assert train_crossencoder(config, tmp_path / "m")["curriculum"] is True


def _cli(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if cache is not None:
        env["RANKWISE_CACHE"] = str(cache)
    else:
        env.pop("RANKWISE_CACHE", None)
    return subprocess.run([sys.executable, "-m", "rankwise.cli", "train", *args], capture_output=True, text=True,
                          env=env)


def _main(*args: str) -> int:
    from rankwise.cli import main

    try:
        main(["train", *args])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_cli_refuses_to_overwrite_and_names_bad_fields(tiny_ce, tiny_beir, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_ce, tiny_beir, "contrastive")))
    trained = tmp_path / "out"
    trained.mkdir()
    (trained / CONFIG_FILE).write_text("kind: crossencoder\n")
    assert _main(str(config), "--output", str(trained)) == 2
    assert "--overwrite" in capsys.readouterr().err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    assert _main(str(config), "--output", str(precious), "--overwrite") == 2
    assert "refusing to delete" in capsys.readouterr().err and (precious / "notes.txt").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: crossencoder\ncrossencoder:\n  objective: hinge\n")
    assert _main(str(bad), "--output", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "crossencoder.objective" in err
    assert _main(str(config), "--output", str(tmp_path / "y"), "--max-steps", "0") == 2
    assert "--max-steps" in capsys.readouterr().err
    assert _main(str(config), "--output", str(tmp_path / "z"), "--batch-size", "0") == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_and_overwrites_only_with_overwrite(tiny_ce, tiny_beir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_ce, tiny_beir, "contrastive", max_steps=5)))
    out = tmp_path / "out"
    done = _cli(str(config), "--output", str(out), "--max-steps", "1", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / RESULTS_FILE).read_text())["steps"] == 1
    again = _cli(str(config), "--output", str(out), "--overwrite", cache=tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / RESULTS_FILE).read_text())["steps"] == 5


@pytest.mark.slow
def test_cli_trains_minilm_on_scifact_for_a_few_steps(tmp_path):
    """The shipped example, 3 steps, on the real MiniLM and SciFact (about a minute on 2 cores)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "train-crossencoder-scifact.yaml"
    done = _cli(str(example), "--output", str(tmp_path / "ce"), "--max-steps", "3")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "ce" / RESULTS_FILE).read_text())
    assert results["steps"] == 3 and results["train_queries"] > 700
