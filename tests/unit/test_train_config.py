"""Training configs: defaults, coercion, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.errors import InputError
from rankwise.train.config import load_config, parse_config, save_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["train-crossencoder-scifact.yaml", "train-crossencoder-dl20.yaml",
                                  "train-crossencoder-synthetic.yaml",
                                  "train-grpo-groupwise.yaml"])
def test_shipped_examples_load(name):
    config = load_config(EXAMPLES / name)
    assert config.kind in ("crossencoder", "grpo")


def test_defaults_and_float_strings():
    config = parse_config({"training": {"learning_rate": "2e-5", "epochs": 2}})
    assert config.kind == "crossencoder" and config.training.learning_rate == 2e-5 and config.training.epochs == 2.0


@pytest.mark.parametrize("values, field", [
    ({"kind": "svm"}, "kind"),
    ({"crossencoder": {"objective": "hinge"}}, "crossencoder.objective"),
    ({"data": {"group_sise": 4}}, "data.group_sise"),
    ({"data": {"group_size": 1}}, "data.group_size"),
    ({"data": {"group_size": "eight"}}, "data.group_size"),
    ({"training": {"batch_size": 0}}, "training.batch_size"),
    ({"crossencoder": {"objective": "margin-mse"}}, "data.teacher"),
    ({"data": {"queries": "topics.tsv"}}, "data.qrels"),
    ({"kind": "grpo", "grpo": {"rewards": {"bleu": 1}}}, "grpo.rewards"),
    ({"kind": "grpo", "grpo": {"prompt": "groupwise.score"}}, "grpo.prompt"),  # no JSON list to reward
    ({"kind": "grpo", "grpo": {"prompt": "no-such-prompt"}}, "grpo.prompt"),
    ({"training": []}, "training"),
])
def test_bad_fields_are_named(values, field, tmp_path):
    with pytest.raises(InputError, match=field.replace(".", r"\.")) as err:
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
