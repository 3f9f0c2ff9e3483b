"""The training time budget continues across --resume: checkpoints record the minutes spent."""

from __future__ import annotations

import json

import pytest

from rankwise.errors import InputError
from rankwise.train.budget import BUDGET_FILE, TimeBudget, resume_budget


def test_a_resumed_budget_starts_where_the_checkpoint_left_it(tmp_path):
    checkpoint = tmp_path / "checkpoint-78"
    checkpoint.mkdir()
    (checkpoint / BUDGET_FILE).write_text(json.dumps({"spent_seconds": 30 * 60.0, "minutes": 60}))
    budget = TimeBudget(minutes=60, warmup_ratio=0.1)
    resume_budget(budget, str(checkpoint))
    budget.begin()
    assert budget.fraction() == pytest.approx(0.5, abs=1e-3)
    assert budget.lr_factor(0) == pytest.approx(0.5 / 0.9, abs=1e-3)  # mid-decay, no second warm-up


def test_a_longer_budget_on_resume_extends_the_run(tmp_path):
    checkpoint = tmp_path / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / BUDGET_FILE).write_text(json.dumps({"spent_seconds": 35 * 60.0, "minutes": 35}))
    budget = TimeBudget(minutes=70)
    resume_budget(budget, str(checkpoint))
    budget.begin()
    assert budget.fraction() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("checkpoint", [None, "no-record"])
def test_without_a_record_the_budget_starts_fresh(tmp_path, checkpoint):
    folder = None
    if checkpoint:
        folder = tmp_path / checkpoint
        folder.mkdir()  # a checkpoint from before checkpoints recorded the budget
    budget = TimeBudget(minutes=10)
    resume_budget(budget, str(folder) if folder else None)
    budget.begin()
    assert budget.fraction() == pytest.approx(0.0, abs=1e-3) and budget.spent_before == 0.0


@pytest.mark.parametrize("text", ["{not json", "{}", '{"spent_seconds": "soon"}', "[1, 2]"])
def test_a_broken_record_is_an_error_naming_the_file(tmp_path, text):
    (tmp_path / BUDGET_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=BUDGET_FILE):
        resume_budget(TimeBudget(minutes=10), str(tmp_path))
