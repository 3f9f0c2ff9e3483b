"""A wall-time budget for transformers trainers: time-based LR schedule, stop (and save) when spent.
Every checkpoint records the minutes spent, so ``--resume`` continues the budget (and its LR schedule)
where the stopped run left it instead of starting a fresh one."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rankwise.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class TimeBudget:
    """Wall-clock budget: the LR schedule follows elapsed time (warmup, then linear decay to 0 at the
    budget), and training stops, saving the model, when it is spent."""

    minutes: float
    warmup_ratio: float = 0.1
    start: float = 0.0
    spent_before: float = 0.0  # seconds spent by the run a resumed one continues

    def begin(self) -> None:
        self.start = time.monotonic() - self.spent_before

    def spent_seconds(self) -> float:
        return time.monotonic() - self.start if self.start else self.spent_before

    def fraction(self) -> float:
        return self.spent_seconds() / (self.minutes * 60) if self.start else 0.0

    def lr_factor(self, _step: int) -> float:
        f = self.fraction()
        if f < self.warmup_ratio:
            return max(f / self.warmup_ratio, 0.01)
        return max(0.0, (1 - f) / (1 - self.warmup_ratio))


BUDGET_FILE = "time-budget.json"
"""Written into every checkpoint of a run with a time budget: the seconds spent up to it."""


def resume_budget(budget: TimeBudget | None, checkpoint: str | None) -> None:
    """Let ``budget`` continue from the time spent up to ``checkpoint`` (nothing spent without one, or for a
    checkpoint written before checkpoints recorded it)."""
    record = Path(checkpoint) / BUDGET_FILE if checkpoint else None
    if budget is None or record is None or not record.is_file():
        return
    try:
        budget.spent_before = float(json.loads(record.read_text(encoding="utf-8"))["spent_seconds"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{record}: not a time-budget record (expected JSON with a number \"spent_seconds\"): "
                         f"{e}; delete the file to resume with a fresh budget") from None
    logger.info("resuming with %.1f of %.1f budget minutes spent", budget.spent_before / 60, budget.minutes)


def budget_callbacks(budget: TimeBudget | None) -> list:
    """A transformers callback that stops training (saving) when ``budget`` is spent, and records the time
    spent in every checkpoint; [] without a budget."""
    from transformers import TrainerCallback

    class StopAtBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            budget.begin()

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and state.is_world_process_zero:
                (folder / BUDGET_FILE).write_text(json.dumps(
                    {"spent_seconds": budget.spent_seconds(), "minutes": budget.minutes}), encoding="utf-8")

        def on_step_end(self, args, state, control, **kwargs):
            if budget.fraction() >= 1:
                logger.warning("time budget of %.1f min spent after %d steps", budget.minutes, state.global_step)
                control.should_training_stop = True
                control.should_save = True

    return [StopAtBudget()] if budget else []


def with_time_schedule(trainer_class, budget: TimeBudget | None):
    """``trainer_class`` whose LR schedule follows ``budget`` (unchanged without a budget)."""
    if budget is None:
        return trainer_class

    class BudgetTrainer(trainer_class):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, budget.lr_factor)
            return self.lr_scheduler

    return BudgetTrainer
