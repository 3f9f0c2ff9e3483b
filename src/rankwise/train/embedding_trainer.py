"""Embedding models as listwise rerankers (E2Rank, Liu et al. 2025) on sentence-transformers' trainer.

| stage         | loss                                                         | columns                              |
|---------------|--------------------------------------------------------------|--------------------------------------|
| contrastive   | MultipleNegativesRankingLoss (InfoNCE: the positive against   | query, positive, negative_1..n       |
|               | the group's first-stage hard negatives and in-batch ones)     |                                      |
| listwise      | RankNet over ``scale * cos(pseudo query, document)`` against  | query, pseudo_query, doc_0..n, label |
|               | the graded labels, + ``infonce_weight`` * InfoNCE of the query|                                      |

The pseudo query is ``embedding.e2rank``'s listwise prompt of the query and its first-stage top ``m``, rendered
by ``E2Rank.pseudo_query`` over the model being trained (so cut to its token limit exactly as at inference).
The result is a plain ``SentenceTransformer`` directory; with both stages, ``contrastive/`` beside it holds
the first stage's model (the ablation), and ``loss.svg`` plots the training loss of each stage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rankwise.methods.embedding import E2Rank
from rankwise.train.budget import TimeBudget, budget_callbacks, resume_budget, with_time_schedule
from rankwise.train.config import TrainConfig, save_config
from rankwise.train.crossencoder_trainer import (
    CHECKPOINTS,
    CONFIG_FILE,
    RESULTS_FILE,
    use_bf16,
)
from rankwise.train.groups import Group, TrainingSource, training_split
from rankwise.types import Candidate, Query

logger = logging.getLogger(__name__)

STAGE_FILE = "stage-results.json"
"""Written into a finished stage's model directory (``--resume`` skips that stage)."""
PLOT_FILE = "loss.svg"


def load_embedder(model: str, max_length: int | None = None, device: str | None = None):
    """A SentenceTransformer from a registry name (``minilm-l6``), a local directory or a hub id; inputs are
    cut to ``max_length`` tokens (None: the model's own limit)."""
    from sentence_transformers import SentenceTransformer

    from rankwise.llm.models import resolve_model

    encoder = SentenceTransformer(str(resolve_model(model).source), device=device)
    if max_length:
        encoder.max_seq_length = max_length
    return encoder


# -- data --------------------------------------------------------------------------------------------------

def contrastive_dataset(groups: Sequence[Group]):
    """Stage 1 columns: the query, its positive, then the group's hard negatives."""
    from datasets import Dataset

    columns = {"query": [g.query for g in groups], "positive": [g.texts[0] for g in groups]}
    for i in range(1, len(groups[0].texts)):
        columns[f"negative_{i}"] = [g.texts[i] for g in groups]
    return Dataset.from_dict(columns)


def pseudo_queries(source: TrainingSource, qids: Sequence[str], method: E2Rank) -> dict[str, str]:
    """Each query's pseudo query: the method's prompt over its first-stage top ``method.m``, in run order."""
    out = {}
    for qid in qids:
        top = [d for d in source.run.get(qid, {}) if d in source.docs][: method.m]
        head = [Candidate(d, source.docs[d].text, 0.0, source.docs[d].title) for d in top]
        out[qid] = method.pseudo_query(Query(qid, source.queries[qid]), head)
    return out


def listwise_dataset(groups: Sequence[Group], pseudo: Mapping[str, str]):
    """Stage 2 columns: the query, its pseudo query, the group's documents (positive first), their labels."""
    from datasets import Dataset

    columns = {"query": [g.query for g in groups], "pseudo_query": [pseudo[g.qid] for g in groups]}
    for i in range(len(groups[0].texts)):
        columns[f"doc_{i}"] = [g.texts[i] for g in groups]
    columns["label"] = [list(g.labels) for g in groups]
    return Dataset.from_dict(columns)


# -- the listwise loss -------------------------------------------------------------------------------------

def ranknet(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RankNet: mean of log(1 + exp(s_j - s_i)) over the pairs of a list where label_i > label_j."""
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    pairs = labels.unsqueeze(2) > labels.unsqueeze(1)
    if not pairs.any():
        return scores.sum() * 0.0
    return F.softplus(-diff[pairs]).mean()


class ListwiseRankNetLoss(nn.Module):
    """E2Rank's listwise stage: RankNet over the cosines of the pseudo query to the group's documents, plus
    ``infonce_weight`` times InfoNCE of the plain query (its positive, doc_0, against every document of the
    batch)."""

    def __init__(self, model, scale: float = 20.0, infonce_weight: float = 1.0):
        super().__init__()
        self.model, self.scale, self.infonce_weight = model, scale, infonce_weight

    def forward(self, sentence_features: Sequence[dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        query, pseudo, *docs = [F.normalize(self.model(f)["sentence_embedding"], dim=-1) for f in sentence_features]
        d = torch.stack(docs, dim=1)  # [batch, n, dim]
        loss = ranknet(self.scale * torch.einsum("bd,bnd->bn", pseudo, d), labels.to(d.dtype))
        if self.infonce_weight:
            logits = self.scale * query @ d.reshape(-1, d.shape[-1]).T  # every document of the batch
            target = torch.arange(len(query), device=query.device) * d.shape[1]
            loss = loss + self.infonce_weight * F.cross_entropy(logits, target)
        return loss


# -- training ----------------------------------------------------------------------------------------------

def _stage_plan(config: TrainConfig) -> list[tuple[str, float | None]]:
    """(stage, minutes) in order: both stages share ``max_minutes`` by ``contrastive_share``."""
    e, minutes = config.embedding, config.training.max_minutes
    if e.stages != "both":
        return [(e.stages, minutes)]
    share = e.contrastive_share
    return [("contrastive", minutes * share if minutes else None),
            ("listwise", minutes * (1 - share) if minutes else None)]


def _run_stage(stage: str, model, dataset, loss, config: TrainConfig, checkpoints: Path, minutes: float | None,
               resume: bool, callbacks) -> dict:
    """Train one stage with SentenceTransformerTrainer; its results (steps, loss, log)."""
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers.trainer_utils import get_last_checkpoint

    t = config.training
    started = time.monotonic()
    budget = TimeBudget(minutes, t.warmup_ratio) if minutes else None
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate, warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay, bf16=use_bf16(t.dtype), use_cpu=not torch.cuda.is_available(), seed=t.seed,
        data_seed=t.seed, logging_steps=t.logging_steps, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none",
        dataloader_drop_last=False)
    trainer = with_time_schedule(SentenceTransformerTrainer, budget)(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[*budget_callbacks(budget), *callbacks])
    checkpoint = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.is_dir() else None
    if resume and checkpoint is None:
        logger.warning("no checkpoint in %s: stage %s starts from the beginning", checkpoints, stage)
    resume_budget(budget, checkpoint)
    out = trainer.train(resume_from_checkpoint=checkpoint)
    return {"stage": stage, "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0.0, 3),
            "train_loss": out.training_loss, "bf16": args.bf16, "resumed_from": checkpoint,
            "seconds": round(time.monotonic() - started, 1),
            "log": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]}


def train_embedding(config: TrainConfig, output: Path, resume: bool = False, extra_callbacks=()) -> dict:
    """Train a bi-encoder as ``config`` says (contrastive, listwise or both stages); write a
    SentenceTransformer directory to ``output`` with ``train-config.yaml``, ``train-results.json``,
    ``loss.svg`` and ``checkpoints/<stage>/``. Returns the results dict."""
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend

    d, t, e = config.data, config.training, config.embedding
    started = time.monotonic()
    split = training_split(d, d.group_size)
    logger.info("%d groups of %d from %d training queries", len(split.groups), d.group_size, len(split.train_qids))
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    plan = _stage_plan(config)
    model = load_embedder(config.model, t.max_length)
    stages = []
    for n, (stage, minutes) in enumerate(plan):
        last = n == len(plan) - 1
        done = output / stage / STAGE_FILE
        if resume and not last and done.is_file():  # finished before: continue from its model
            logger.info("stage %s already done: loading %s", stage, done.parent)
            model = load_embedder(str(done.parent), t.max_length)
            stages.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        if stage == "contrastive":
            dataset = contrastive_dataset(split.groups)
            loss = MultipleNegativesRankingLoss(model, scale=e.scale)
        else:
            method = E2Rank(SentenceTransformerBackend.of(model), m=e.m, prompt=e.prompt)
            dataset = listwise_dataset(split.groups, pseudo_queries(split.source, split.train_qids, method))
            loss = ListwiseRankNetLoss(model, e.scale, e.infonce_weight)
        result = _run_stage(stage, model, dataset, loss, config, output / CHECKPOINTS / stage, minutes, resume,
                            extra_callbacks)
        stages.append(result)
        if not last:
            model.save_pretrained(str(output / stage))
            done.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    model.save_pretrained(str(output))
    results = {
        "model": config.model, "stages": stages, "m": e.m, "steps": sum(s["steps"] for s in stages),
        "train_loss": stages[-1]["train_loss"], "train_groups": len(split.groups),
        "train_queries": len(split.train_qids), "dev_queries": len(split.dev_qids),
        "seconds": round(time.monotonic() - started, 1),
        "plot": plot_losses(stages, output / PLOT_FILE),
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results


# -- the loss plot -----------------------------------------------------------------------------------------

def plot_losses(stages: Sequence[dict], path: Path, width: int = 640, height: int = 320) -> str | None:
    """The logged training loss of each stage, one after the other, as an SVG line chart (no plotting
    library needed); the file's name, or None when nothing was logged."""
    points, offset = [], 0
    for s in stages:
        points.append((s["stage"], [(offset + e["step"], e["loss"]) for e in s["log"]]))
        offset += s["steps"]
    every = [p for _, line in points for p in line]
    if not every:
        return None
    pad = 40
    x_max = max(x for x, _ in every) or 1
    y_min, y_max = min(y for _, y in every), max(y for _, y in every)
    y_span = (y_max - y_min) or 1.0

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x / x_max * (width - 2 * pad), height - pad - (y - y_min) / y_span * (height - 2 * pad)

    colours = ("#1f77b4", "#d62728")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12"><rect width="100%" height="100%" fill="white"/>')
    parts = [svg,
             f'<text x="{pad}" y="20">training loss per logged step (0..{x_max})</text>',
             f'<text x="4" y="{pad}">{y_max:.3g}</text><text x="4" y="{height - pad}">{y_min:.3g}</text>']
    for i, (stage, line) in enumerate(points):
        colour = colours[i % len(colours)]
        at = [xy(x, y) for x, y in line]
        if at:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{" ".join(f"{u:.1f},{v:.1f}" for u, v in at)}"/>')
            parts += [f'<circle cx="{u:.1f}" cy="{v:.1f}" r="3" fill="{colour}"/>' for u, v in at]
        parts.append(f'<text x="{width - 160}" y="{20 + 16 * i}" fill="{colour}">{stage}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path.name
