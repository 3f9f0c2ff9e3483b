"""A wall-time budget for transformers trainers: time-based LR schedule, stop (and save) when spent."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass
class TimeBudget:
    """Wall-clock budget: the LR schedule follows elapsed time (warmup, then linear decay to 0 at the
    budget), and training stops, saving the model, when it is spent."""

    minutes: float
    warmup_ratio: float = 0.1
    start: float = 0.0

    def begin(self) -> None:
        self.start = time.monotonic()

    def fraction(self) -> float:
        return (time.monotonic() - self.start) / (self.minutes * 60) if self.start else 0.0

    def lr_factor(self, _step: int) -> float:
        f = self.fraction()
        if f < self.warmup_ratio:
            return max(f / self.warmup_ratio, 0.01)
        return max(0.0, (1 - f) / (1 - self.warmup_ratio))


def budget_callbacks(budget: TimeBudget | None) -> list:
    """A transformers callback that stops training (saving) when ``budget`` is spent; [] without one."""
    from transformers import TrainerCallback

    class StopAtBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            budget.begin()

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
