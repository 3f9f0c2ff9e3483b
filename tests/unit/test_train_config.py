"""Training configs: defaults, coercion, and errors that name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rankwise.errors import InputError
from rankwise.train.config import load_config, parse_config, save_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("train-*.yaml")))
def test_shipped_examples_load(name):
    config = load_config(EXAMPLES / name)
    assert config.kind in ("crossencoder", "grpo", "sft", "contrastive", "embedding")


def test_defaults_and_float_strings():
    config = parse_config({"training": {"learning_rate": "2e-5", "epochs": 2}})
    assert config.kind == "crossencoder" and config.training.learning_rate == 2e-5 and config.training.epochs == 2.0


@pytest.mark.parametrize("values, field", [
    ({"kind": "svm"}, "kind"),
    ({"crossencoder": {"objective": "hinge"}}, "crossencoder.objective"),
    ({"data": {"group_sise": 4}}, "data.group_sise"),
    ({"data": {"group_size": 1}}, "data.group_size"),
    ({"data": {"max_positives": 0}}, "data.max_positives"),
    ({"data": {"max_positives": 3}}, "data.max_positives"),  # a cross-encoder's group has one positive
    ({"kind": "contrastive", "data": {"max_positives": 2}}, "data.max_positives"),  # InfoNCE: one positive
    ({"data": {"group_size": "eight"}}, "data.group_size"),
    ({"training": {"batch_size": 0}}, "training.batch_size"),
    ({"crossencoder": {"objective": "margin-mse"}}, "data.teacher"),
    ({"data": {"queries": "topics.tsv"}}, "data.qrels"),
    ({"kind": "grpo", "grpo": {"rewards": {"bleu": 1}}}, "grpo.rewards"),
    ({"kind": "grpo", "grpo": {"target": "pointwise.qlm"}}, "grpo.target"),  # no answer to reward
    ({"kind": "grpo", "grpo": {"target": "embedding.cosine"}}, "grpo.target"),
    ({"kind": "grpo", "grpo": {"options": {"group_sise": 3}}}, "grpo.options"),
    ({"kind": "grpo", "grpo": {"rewards": {"pooled": 1}}}, "grpo.rewards"),  # pooled needs a pointwise target
    ({"kind": "grpo", "grpo": {"target": "pointwise.graded", "rewards": {"label": 1}}}, "grpo.rewards"),
    ({"kind": "grpo", "data": {"group_size": 8}, "training": {"batch_size": 4},
      "grpo": {"target": "pointwise.graded", "rewards": {"pooled": 1}}}, "training.batch_size"),
    ({"kind": "grpo", "grpo": {"on_collapse": "panic"}}, "grpo.on_collapse"),
    ({"stages": [{"grpo": {}}]}, "stages[0]"),  # a stage needs a name
    ({"stages": [{"name": "a", "model": "x"}]}, "stages[0].model"),  # the model is the previous stage's
    ({"kind": "sft", "teacher": {"method": "no.such"}}, "teacher.method"),
    ({"kind": "sft", "sft": {"target": "pointwise.graded"}, "teacher": {}}, "teacher"),
    ({"kind": "contrastive", "teacher": {}}, "teacher"),
    ({"kind": "grpo", "teacher": {}}, "teacher"),
    ({"training": []}, "training"),
])
def test_bad_fields_are_named(values, field, tmp_path):
    with pytest.raises(InputError, match=re.escape(field)) as err:
        parse_config(values, tmp_path / "c.yaml")
    assert "c.yaml" in str(err.value)


def test_load_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: crossencoder\ndata: [1,\n")
    with pytest.raises(InputError, match="bad.yaml:"):
        load_config(bad)
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_reloads_identically(tmp_path):
    config = parse_config({"data": {"dataset": "dl20", "min_grade": 2}, "crossencoder": {"objective": "lambda"}})
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_stages_chain_models_and_override_section_fields(tmp_path):
    from rankwise.train.stages import stage_configs

    config = load_config(EXAMPLES / "train-prorank.yaml")
    (n1, warmup, out1), (n2, fine, out2) = stage_configs(config, tmp_path / "out")
    assert (n1, n2) == ("warmup", "fine") and warmup.model == "qwen2.5-0.5b" and fine.model == str(out1)
    assert out1 == tmp_path / "out" / "stages" / "1-warmup" and out2 == tmp_path / "out"
    assert warmup.grpo.rewards == {"format": 1.0, "coarse": 1.0}  # replaced whole, not merged
    assert fine.grpo.rewards == {"pooled": 1.0, "distribution": 0.5, "format": 0.25}
    assert warmup.grpo.target == fine.grpo.target == "pointwise.graded"  # the other grpo fields kept
    assert (warmup.training.max_minutes, fine.training.max_minutes) == (6.0, 10.0)
    assert not warmup.stages and not fine.stages
    erank = stage_configs(load_config(EXAMPLES / "train-erank.yaml"), tmp_path / "e")
    assert [c.kind for _, c, _ in erank] == ["sft", "grpo"]


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_several_positives_per_group_are_for_targets_that_grade_every_document(kind):
    assert parse_config({"kind": kind, "data": {"max_positives": 3}}).data.max_positives == 3
