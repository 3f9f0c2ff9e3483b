"""The training directory: checked without side effects, locked while training, emptied only under --overwrite
and only when an earlier ``rankwise train`` wrote it."""

from __future__ import annotations

import pytest

from rankwise.cli.train import LOCK_FILE, training_directory
from rankwise.errors import InputError
from rankwise.train.crossencoder_trainer import CONFIG_FILE


def test_a_second_training_on_the_same_directory_stops_at_once(tmp_path):
    out = tmp_path / "model"
    with training_directory(out, overwrite=False, resume=False):
        with pytest.raises(InputError, match="another `rankwise train` is writing this directory"):
            with training_directory(out, overwrite=False, resume=True):
                pass
    with training_directory(out, overwrite=False, resume=False):  # free again once the first has finished
        pass


def test_overwrite_empties_an_earlier_training_directory(tmp_path):
    out = tmp_path / "model"
    (out / "checkpoints" / "step-1").mkdir(parents=True)
    (out / CONFIG_FILE).write_text("kind: sft\n")
    with training_directory(out, overwrite=True, resume=False):
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]


def test_a_refused_directory_is_left_exactly_as_it_was(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(InputError):
            with training_directory(precious, overwrite=overwrite, resume=False):
                pass
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


def test_resume_keeps_what_is_there(tmp_path):
    out = tmp_path / "model"
    (out / "checkpoints").mkdir(parents=True)
    with training_directory(out, overwrite=False, resume=True):
        assert (out / "checkpoints").is_dir()


def test_a_file_is_not_a_training_directory(tmp_path):
    target = tmp_path / "model"
    target.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        with training_directory(target, overwrite=True, resume=False):
            pass
    assert target.read_text() == "x"
