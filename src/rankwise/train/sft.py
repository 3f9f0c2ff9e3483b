"""Causal-LM rerankers trained on a method's own prompt: ``kind: sft`` and ``kind: contrastive``.

Both read the answer's logits after the prompt (fp32 LM head, as the transformers engine scores) for the
rows of rankwise.train.targets (pointwise: a prompt per passage of a group, one positive first; listwise and
setwise: one window or set per group):

- ``sft``: token cross-entropy over the vocabulary on the answer tokens the labels map to (Yes/No from
  ``data.min_grade``, the grade 0..k for ``pointwise.graded``, the permutation by grade for listwise
  (RankZephyr), the best passage's label for setwise), i.e. generative fine-tuning on the answer; for
  ``listwise.first`` plus FIRST's ranking loss on the first identifier's logits (``sft.first_weight``);
- ``contrastive``: InfoNCE over the group on the score ``pointwise.yes_no`` ranks by, the yes/no log-odds
  (logsumexp of the Yes variants minus that of the No variants), the positive as the class;
- ``sft`` with a ``teacher`` (rankwise.train.teacher): a pointwise.yes_no student learns the teacher's score
  distribution over each group (KL on the log-odds); listwise and setwise students the teacher's order;
  groupwise students the teacher's scores on the prompt's scale.

Training runs on transformers' Trainer (checkpoints, ``--resume``, progress bar, the time budget of
rankwise.train.budget) with a PEFT LoRA adapter (or full fine-tuning). Where bf16 is native the frozen base
weights are bf16 and the adapter fp32; the adapter is merged into fp32 weights. The output directory is a
plain transformers model: ``rankwise rerank --method <sft.target> --model DIR``. Beside it: ``adapter/``,
the config, ``train-results.json`` (data sources included), ``train-queries.json``, ``loss.json`` and
``loss.png``.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from rankwise.plotting import pyplot
from rankwise.train.budget import TimeBudget, budget_callbacks, resume_budget, with_time_schedule
from rankwise.train.config import TrainConfig, save_config
from rankwise.train.crossencoder_trainer import (
    CHECKPOINTS,
    CONFIG_FILE,
    RESULTS_FILE,
    use_bf16,
)
from rankwise.train.groups import Group, training_split
from rankwise.train.probe import ProbePrompt, greedy_answers, spread
from rankwise.train.targets import TargetRow, target_method, target_rows, yes_no_ids

logger = logging.getLogger(__name__)

LOSS_FILE = "loss.json"


def greedy_probe(method, rows: Sequence[TargetRow], groups: Sequence[Group]) -> tuple | None:
    """What the greedy probe (rankwise.train.probe) needs after training a method that generates its answer
    (groupwise lists or score lines, listwise permutations): probe prompts, the method's parser and a token
    budget; None for methods that read one answer token's logits."""
    from rankwise.methods.groupwise import Groupwise
    from rankwise.methods.listwise import Listwise
    from rankwise.train.grpo_targets import target_for

    if not (isinstance(method, Groupwise) or (isinstance(method, Listwise) and method.mode == "generate")):
        return None
    target = target_for(method, len(groups[0].texts))
    target.release_backend()
    chosen = spread(list(zip(rows, groups)))
    prompts = [ProbePrompt(row.input_ids[0], method.answer_prefix, len(g.texts)) for row, g in chosen]
    return prompts, target, max(len(row.answers[0]) for row, _ in chosen) + 8


def load_lm(model: str, dtype: torch.dtype):
    """Tokenizer and causal LM from a registry name (GGUF: its converted directory), a directory or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rankwise.llm.models import hf_dir_for_gguf, resolve_model

    resolved = resolve_model(model)
    source = str(hf_dir_for_gguf(resolved.gguf_file) if resolved.gguf_file else resolved.source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype), tokenizer


class RowDataset(torch.utils.data.Dataset):
    def __init__(self, rows: Sequence[TargetRow]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> TargetRow:
        return self.rows[i]


def collate(rows: Sequence[TargetRow], pad_id: int) -> dict:
    """Groups -> one right-padded batch of all their prompts, each followed by its answer but the last
    answer token (teacher forcing): ``positions`` (row, position) predict the answer tokens ``targets``;
    ``last`` is each prompt's last position (its first answer prediction, which pointwise scoring, the
    contrastive loss and FIRST's ranking loss read), ``first`` its index among ``positions``."""
    prompts = [p for r in rows for p in r.input_ids]
    answers = [a for r in rows for a in r.answers]
    sequences = [p + a[:-1] for p, a in zip(prompts, answers)]
    width = max(len(q) for q in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    positions, first = [], []
    for i, (q, p, a) in enumerate(zip(sequences, prompts, answers)):
        input_ids[i, :len(q)] = torch.tensor(q)
        mask[i, :len(q)] = 1
        first.append(len(positions))
        positions += [(i, len(p) - 1 + k) for k in range(len(a))]
    width = max((len(r.ranking) for r in rows), default=0)
    ranking = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        ranking[i, :len(r.ranking)] = torch.tensor(r.ranking, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask, "positions": torch.tensor(positions),
            "last": torch.tensor([len(p) - 1 for p in prompts]), "first": torch.tensor(first),
            "targets": torch.tensor([t for a in answers for t in a]), "ranking": ranking,
            "soft": torch.tensor([r.soft for r in rows], dtype=torch.float32) if rows[0].soft else None,
            "group_size": len(rows[0].input_ids)}


def answer_logits(model, batch: dict) -> torch.Tensor:
    """fp32 next-token logits at every answer position [n, vocab] (the engine's scoring path: the decoder's
    hidden states of those positions only through the LM head)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                                ).last_hidden_state
    rows, cols = batch["positions"].T
    picked = hidden[rows.to(hidden.device), cols.to(hidden.device)]
    head = base.get_output_embeddings()
    # in the head's dtype (a fp32 copy of a 150k-token head costs 0.5 GB per step), read out in fp32
    logits = (picked.to(head.weight.dtype) @ head.weight.T).float()
    return logits + head.bias.float() if getattr(head, "bias", None) is not None else logits


def sft_loss(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """Token cross-entropy on the answer tokens of every prompt."""
    return F.cross_entropy(logits, batch["targets"])


def first_ranking_loss(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """FIRST's ranking loss: at each window's first answer position, the logit of every identifier against
    those ranked below it (RankNet), a pair at 1-based ranks i < j weighted 1 / (i + j)."""
    first = logits[batch["first"]]
    losses = []
    for row, ids in zip(first, batch["ranking"]):
        ids = ids[ids >= 0]
        scores = row[ids.to(row.device)]
        i, j = torch.triu_indices(len(ids), len(ids), 1)
        weight = 1.0 / (i + j + 2).float()
        losses.append((weight * F.softplus(scores[j] - scores[i])).sum() / weight.sum())
    return torch.stack(losses).mean()


def yes_no_log_odds(logits: torch.Tensor, batch: dict, yes: Sequence[int], no: Sequence[int]) -> torch.Tensor:
    """The score ``pointwise.yes_no`` ranks by, per prompt, read at its first answer position, as
    [groups, group_size]: logsumexp of the Yes variants minus that of the No variants."""
    logprobs = torch.log_softmax(logits[batch["first"]], dim=-1)
    scores = torch.logsumexp(logprobs[:, list(yes)], -1) - torch.logsumexp(logprobs[:, list(no)], -1)
    return scores.view(-1, batch["group_size"])


def distill_loss(logits: torch.Tensor, batch: dict, yes: Sequence[int], no: Sequence[int], temperature: float,
                 scale: float) -> torch.Tensor:
    """KL from the teacher's distribution over each group, softmax(scale * teacher scores), to the student's,
    softmax(yes/no log-odds / temperature)."""
    student = torch.log_softmax(yes_no_log_odds(logits, batch, yes, no) / temperature, dim=-1)
    teacher = torch.softmax(scale * batch["soft"].to(student.device), dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean")


def contrastive_loss(logits: torch.Tensor, batch: dict, yes: Sequence[int], no: Sequence[int],
                     temperature: float) -> torch.Tensor:
    """InfoNCE over each group's yes/no log-odds (read at each prompt's first answer position); the
    positive is the group's first passage."""
    scores = yes_no_log_odds(logits, batch, yes, no) / temperature
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


def _loss_log(path: Path, keep: bool):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Loss and learning rate of every logged step, in ``path`` (kept across ``--resume``)."""

        def __init__(self):
            self.rows: list[dict] = json.loads(path.read_text()) if keep and path.is_file() else []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.rows = [r for r in self.rows if r["step"] < state.global_step]
                self.rows.append({"step": state.global_step, "loss": logs["loss"],
                                  "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch"),
                                  "time": round(time.time(), 1)})
                path.write_text(json.dumps(self.rows, indent=1) + "\n", encoding="utf-8")

    return LossLog()


def plot_loss(rows: list[dict], path: Path, title: str) -> bool:
    """Training loss per logged step as a PNG; False (nothing written) without matplotlib."""
    plt = pyplot()
    if plt is None:
        logger.warning("matplotlib is not installed: no loss plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = [r["step"] for r in rows], [float(r["loss"]) for r in rows]
    window = max(1, len(rows) // 6)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    ax.plot(steps, losses, lw=1, alpha=0.45, color="C0", label="per logged step")
    ax.plot(steps, smooth, lw=2.5, color="C0", label=f"mean of {window} logged steps")
    ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def merge_adapter(model: str, adapter: Path):
    """The base model in fp32 with the LoRA adapter merged (after training on bf16 base weights: small
    LoRA updates would round away in bf16 weights)."""
    from peft import PeftModel

    base, _ = load_lm(model, torch.float32)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def train_sft(config: TrainConfig, output: Path, resume: bool = False) -> dict:
    """``kind: sft`` or ``contrastive`` on groups built from ``config.data``; writes ``output`` (module doc)."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from rankwise.llm.engines.transformers import TransformersBackend

    d, t, s = config.data, config.training, config.sft
    started = time.monotonic()
    split = training_split(d, d.group_size)
    teacher = None
    if config.teacher is not None:  # scored before the student loads: one model in memory at a time
        from rankwise.train.groups import teacher_labels
        from rankwise.train.teacher import teacher_run

        teacher = teacher_labels(split.groups, teacher_run(config.teacher, split.groups, split.source.queries,
                                                           output))
        gc.collect()
    bf16 = use_bf16(t.dtype)
    # LoRA: frozen base weights in bf16 where native (2-4x faster), PEFT keeps the adapter in fp32.
    # Full fine-tuning keeps fp32 weights (AdamW updates would round away in bf16) under bf16 autocast.
    dtype = torch.bfloat16 if bf16 and s.lora else torch.float32
    model, tokenizer = load_lm(config.model, dtype)
    # The method over the model being trained renders the prompts; named as the output directory, so a
    # model profile resolves as it will for ``--model DIR``.
    backend = TransformersBackend(str(output), name=str(output), torch_model=model, tokenizer=tokenizer,
                                  dtype=dtype, device="cpu")
    method = target_method(s.target, backend, s.options)
    rows = target_rows(method, split.groups, d.min_grade, d.seed, teacher)
    yes, no = yes_no_ids(method) if config.kind == "contrastive" or rows[0].soft else ([], [])
    probe = greedy_probe(method, rows, split.groups)
    del backend, method
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    (output / "train-queries.json").write_text(json.dumps(
        {q: split.source.queries[q] for q in split.train_qids}, indent=1) + "\n", encoding="utf-8")
    if s.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))

    def loss_of(batch: dict) -> torch.Tensor:
        logits = answer_logits(model, batch)
        if config.kind == "contrastive":
            return contrastive_loss(logits, batch, yes, no, s.temperature)
        if batch["soft"] is not None:  # distillation of a pointwise.yes_no student
            return distill_loss(logits, batch, yes, no, s.temperature, config.teacher.scale)
        if batch["ranking"].shape[1]:  # listwise.first: FIRST's objective
            return sft_loss(logits, batch) + s.first_weight * first_ranking_loss(logits, batch)
        return sft_loss(logits, batch)

    class AnswerTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = loss_of(inputs)
            return (loss, None) if return_outputs else loss

    args = TrainingArguments(
        output_dir=str(output / CHECKPOINTS), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate, warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay, bf16=bf16, use_cpu=not torch.cuda.is_available(), seed=t.seed,
        data_seed=t.seed, logging_steps=t.logging_steps, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, remove_unused_columns=False, report_to="none",
        activation_checkpointing=t.gradient_checkpointing, activation_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0)
    budget = TimeBudget(t.max_minutes, t.warmup_ratio) if t.max_minutes else None
    log = _loss_log(output / LOSS_FILE, keep=resume)
    trainer = with_time_schedule(AnswerTrainer, budget)(
        model=model, args=args, train_dataset=RowDataset(rows), processing_class=tokenizer,
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id),
        callbacks=[*budget_callbacks(budget), log])
    checkpoint = get_last_checkpoint(str(output / CHECKPOINTS)) if resume and (output / CHECKPOINTS).is_dir() \
        else None
    resume_budget(budget, checkpoint)
    train_out = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = round(time.monotonic() - started, 1)
    steps = trainer.state.global_step
    if s.lora:
        trainer.save_model(str(output / "adapter"))
    model = trainer.model
    del trainer
    if s.lora and bf16:
        del model  # freed before the fp32 base loads: one model in memory at a time
        gc.collect()
        merged = merge_adapter(config.model, output / "adapter")
    else:
        merged = model.merge_and_unload() if s.lora else model
    greedy = greedy_answers(merged, tokenizer, *probe) if probe else None
    merged.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    results = {
        "kind": config.kind, "target": s.target, "model": config.model, "steps": steps,
        "train_loss": train_out.training_loss, "train_groups": len(rows),
        "train_prompts": sum(len(r.answers) for r in rows), "train_queries": len(split.train_qids),
        "dev_queries": len(split.dev_qids), "held_out_queries": len(split.source.held_out),
        "unjudged_queries": sum(1 for q in split.train_qids if not split.source.qrels.get(q)),
        "sources": {"queries": f"{d.dataset}: {d.queries}",
                    "labels": (d.qrels or f"{d.dataset}: qrels") + ("; unjudged queries: the teacher's scores only"
                                                                    if d.unjudged else ""),
                    "negatives": f"{d.dataset}: {d.first_stage} top {d.depth}", "held_out": list(d.held_out)},
        "teacher": f"{config.teacher.method} on {config.teacher.model}" if config.teacher else None,
        "bf16": bf16, "lora": s.lora, "resumed_from": checkpoint, "seconds": train_seconds,
        "greedy_answers": greedy,
        "plot": plot_loss(log.rows, output / "loss.png", f"{config.kind} {s.target} on {config.model}")
        if log.rows else False,
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results
