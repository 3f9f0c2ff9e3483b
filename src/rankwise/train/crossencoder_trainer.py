"""Cross-encoder training on sentence-transformers' CrossEncoderTrainer: one objective per loss.

| objective    | loss (sentence_transformers.cross_encoder.losses) | columns                                  |
|--------------|---------------------------------------------------|------------------------------------------|
| bce          | BinaryCrossEntropyLoss (pointwise)                | query, document, label (grade / max)     |
| contrastive  | MultipleNegativesRankingLoss (InfoNCE, group)     | query, positive, negative_1..n           |
| listnet      | ListNetLoss                                       | query, docs, labels (graded)             |
| lambda       | LambdaLoss (NDCGLoss2++)                          | query, docs, labels                      |
| ranknet      | RankNetLoss                                       | query, docs, labels                      |
| margin-mse   | MarginMSELoss (distillation)                      | query, doc_0..n, label (teacher scores)  |

The result is a plain sentence-transformers ``CrossEncoder`` directory.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import SequentialSampler

from rankwise.data import Run
from rankwise.train.budget import TimeBudget, budget_callbacks, resume_budget, with_time_schedule
from rankwise.train.config import TrainConfig, save_config
from rankwise.train.groups import Group, teacher_labels, training_split

logger = logging.getLogger(__name__)

CONFIG_FILE = "train-config.yaml"
"""The config a model directory was trained from (every field, defaults included)."""
RESULTS_FILE = "train-results.json"
CHECKPOINTS = "checkpoints"


def load_crossencoder(model: str, max_length: int = 256, device: str | None = None):
    """A CrossEncoder with one output from a registry name, a local directory (a bi-encoder such as
    minilm-l6 gets a fresh classification head) or a hub id."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from rankwise.llm.models import resolve_model

    source = str(resolve_model(model).source)
    return CrossEncoder(source, num_labels=1, max_length=max_length, device=device)


# -- objectives --------------------------------------------------------------------------------------------

def objective_dataset(objective: str, groups: Sequence[Group], teacher: Run | None = None,
                      teacher_scale: float = 1.0):
    """The ``datasets.Dataset`` a loss reads, in the groups' order."""
    from datasets import Dataset

    if objective == "bce":
        top = max((max(g.labels) for g in groups), default=1.0) or 1.0
        return Dataset.from_dict({
            "query": [g.query for g in groups for _ in g.texts],
            "document": [t for g in groups for t in g.texts],
            "label": [min(label / top, 1.0) for g in groups for label in g.labels]})
    if objective == "contrastive":
        columns = {"query": [g.query for g in groups], "positive": [g.texts[0] for g in groups]}
        for i in range(1, len(groups[0].texts)):
            columns[f"negative_{i}"] = [g.texts[i] for g in groups]
        return Dataset.from_dict(columns)
    if objective in ("listnet", "lambda", "ranknet"):
        return Dataset.from_dict({"query": [g.query for g in groups], "docs": [list(g.texts) for g in groups],
                                  "labels": [list(g.labels) for g in groups]})
    if objective == "margin-mse":
        if teacher is None:
            raise ValueError("margin-mse needs teacher scores")
        columns = {"query": [g.query for g in groups]}
        for i in range(len(groups[0].texts)):
            columns[f"doc_{i}"] = [g.texts[i] for g in groups]
        columns["label"] = [list(s) for s in teacher_labels(groups, teacher, teacher_scale)]
        return Dataset.from_dict(columns)
    raise ValueError(f"unknown objective {objective!r}")


def _group_infonce(model, in_batch_negatives: int, scale: float):
    """InfoNCE over each group (its positive against its hard negatives), plus ``in_batch_negatives``
    documents of other queries per query when > 0."""
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    class GroupInfoNCELoss(MultipleNegativesRankingLoss):
        def get_in_batch_negatives(self, anchors, candidates):
            if self.num_negatives == 0:
                return iter(())
            return super().get_in_batch_negatives(anchors, candidates)

    return GroupInfoNCELoss(model, num_negatives=in_batch_negatives, scale=scale)


def balancing_pos_weight(dataset) -> float:
    """bce: negatives per positive pair, the weight that makes both classes count alike."""
    labels = dataset["label"]
    positives = sum(1 for label in labels if label > 0)
    return (len(labels) - positives) / positives if positives else 1.0


def objective_loss(objective: str, model, in_batch_negatives: int = 0, scale: float = 10.0,
                   pos_weight: float | None = None):
    """The sentence-transformers loss for an objective."""
    from sentence_transformers.cross_encoder import losses

    if objective == "bce":
        weight = None if pos_weight in (None, 1.0) else torch.tensor(float(pos_weight))
        return losses.BinaryCrossEntropyLoss(model, pos_weight=weight)
    if objective == "contrastive":
        return _group_infonce(model, in_batch_negatives, scale)
    if objective == "listnet":
        return losses.ListNetLoss(model)
    if objective == "lambda":
        return losses.LambdaLoss(model)
    if objective == "ranknet":
        return losses.RankNetLoss(model)
    if objective == "margin-mse":
        return losses.MarginMSELoss(model)
    raise ValueError(f"unknown objective {objective!r}")


def sequential_batch_sampler(dataset, batch_size: int, drop_last: bool, **_):
    """Batches in dataset order (the curriculum's easy -> hard order) instead of shuffled."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)


# -- training ----------------------------------------------------------------------------------------------

def use_bf16(dtype: str) -> bool:
    """bf16 mixed precision where it is native (CUDA with bf16, CPUs with AMX / avx512_bf16) or asked for."""
    from rankwise.llm.hardware import choose_device, choose_dtype

    return choose_dtype(dtype, choose_device()) == torch.bfloat16


def _dev_evaluator(source, dev_qids: Sequence[str], depth: int):
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    from rankwise.train.groups import doc_text

    samples = []
    for qid in dev_qids:
        positives = [doc_text(source.docs[d]) for d, g in source.qrels.get(qid, {}).items()
                     if g > 0 and d in source.docs]
        docs = [doc_text(source.docs[d]) for d in list(source.run.get(qid, {}))[:depth] if d in source.docs]
        if positives and docs:
            samples.append({"query": source.queries[qid], "positive": positives, "documents": docs})
    if not samples:
        return None
    return CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", always_rerank_positives=False,
                                          show_progress_bar=False)


def train_crossencoder(config: TrainConfig, output: Path, resume: bool = False, extra_callbacks=()) -> dict:
    """Train a cross-encoder as ``config`` says; write a CrossEncoder directory to ``output`` (with
    ``train-config.yaml``, ``train-results.json`` and ``checkpoints/``). Returns the results dict."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    d, t, ce = config.data, config.training, config.crossencoder
    started = time.monotonic()
    split = training_split(d, d.group_size)
    source, groups, train_qids, dev_qids = split.source, split.groups, split.train_qids, split.dev_qids
    if ce.curriculum:
        groups = sorted(groups, key=lambda g: g.difficulty)
    teacher = None
    if ce.objective == "margin-mse":
        from rankwise.data import read_run

        teacher = read_run(d.teacher)
    dataset = objective_dataset(ce.objective, groups, teacher, d.teacher_scale)
    logger.info("%d groups of %d from %d training queries (%d dev queries held out)", len(groups),
                d.group_size, len(train_qids), len(dev_qids))

    model = load_crossencoder(config.model, t.max_length)
    pos_weight = None
    if ce.objective == "bce":
        pos_weight = ce.pos_weight if ce.pos_weight is not None else balancing_pos_weight(dataset)
        logger.info("bce: relevant pairs weigh %.2f", pos_weight)
    loss = objective_loss(ce.objective, model, ce.in_batch_negatives, ce.temperature_scale, pos_weight)
    evaluator = _dev_evaluator(source, dev_qids, min(d.depth, 30)) if dev_qids else None
    budget = TimeBudget(t.max_minutes, t.warmup_ratio) if t.max_minutes else None
    batch = t.batch_size * d.group_size if ce.objective == "bce" else t.batch_size
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    args = CrossEncoderTrainingArguments(
        output_dir=str(output / CHECKPOINTS), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        gradient_accumulation_steps=t.gradient_accumulation, learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler, weight_decay=t.weight_decay,
        bf16=use_bf16(t.dtype), use_cpu=not torch.cuda.is_available(), seed=t.seed, data_seed=t.seed, logging_steps=t.logging_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy="steps" if t.eval_steps and evaluator else "no", eval_steps=t.eval_steps,
        batch_sampler=sequential_batch_sampler if ce.curriculum else "batch_sampler",
        report_to="none", dataloader_drop_last=False)
    trainer_class = with_time_schedule(CrossEncoderTrainer, budget)
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator,
                            callbacks=[*budget_callbacks(budget), *extra_callbacks])
    checkpoint = get_last_checkpoint(str(output / CHECKPOINTS)) if resume and (output / CHECKPOINTS).is_dir() \
        else None
    if resume and checkpoint is None:
        logger.warning("no checkpoint in %s: starting from the beginning", output / CHECKPOINTS)
    resume_budget(budget, checkpoint)
    train_out = trainer.train(resume_from_checkpoint=checkpoint)
    model.save_pretrained(str(output))
    results = {
        "objective": ce.objective, "curriculum": ce.curriculum, "model": config.model, "pos_weight": pos_weight,
        "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0.0, 3),
        "train_loss": train_out.training_loss, "train_groups": len(groups), "train_queries": len(train_qids),
        "dev_queries": len(dev_qids), "bf16": args.bf16, "resumed_from": checkpoint,
        "seconds": round(time.monotonic() - started, 1),
        "dev": evaluator(model) if evaluator is not None else None,
        "log": [e for e in trainer.state.log_history if "loss" in e],
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results
