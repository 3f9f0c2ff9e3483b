"""GRPO for LLM rerankers on TRL's GRPOTrainer with a PEFT LoRA adapter: the model is trained to be run by
``groupwise.generate`` with the ``groupwise.json`` prompt (a JSON list of one 0-3 score per passage).

Train and inference are one code path: the training prompts are rendered by the method itself (built over
the policy being trained, ``training_method``), passages shuffled with their labels (seeded); the rewards
read completions with the method's parser (rankwise.train.rewards); evaluation loads the output directory
as that method (``load_trained``) and reranks through ``rankwise.pipeline.run``. The method's
``answer_prefix`` (``[``) ends the prompt, so a small model continues a list instead of chatting: without it
SmolLM2-135M's answers were all broken, every reward -1 and GRPO's advantages zero. Rewards: nDCG@k of the
induced ranking, a distributional reward against the graded labels, and a format reward. The output
directory holds the LoRA adapter (``adapter/``), the merged model (a plain transformers directory, so
``--model DIR`` loads it), the config, ``rewards.json`` (mean reward per logged step) and ``rewards.png``
when matplotlib is installed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rankwise.pipeline.loading import load_reranker
from rankwise.train.budget import TimeBudget, budget_callbacks, with_time_schedule
from rankwise.train.config import GrpoConfig, TrainConfig, save_config
from rankwise.train.crossencoder_trainer import CHECKPOINTS, CONFIG_FILE, RESULTS_FILE, use_bf16
from rankwise.train.groups import Group, training_split
from rankwise.train.rewards import MAX_GRADE, reward_functions

if TYPE_CHECKING:
    from rankwise.methods.groupwise import Groupwise

logger = logging.getLogger(__name__)

METHOD = "groupwise.generate"
"""The method a GRPO-trained model is trained for and evaluated with."""


def method_options(g: GrpoConfig) -> dict[str, Any]:
    """The options of ``METHOD`` that the config trains: evaluation runs the method with the same ones."""
    return {"prompt": g.prompt, "group_size": g.group_size, "max_passage_tokens": g.max_passage_tokens,
            "answer_prefix": g.answer_prefix}


def training_method(model, tokenizer, name: str, g: GrpoConfig) -> Groupwise:
    """``METHOD`` over the policy being trained (the same weights, left on their device and dtype), loaded
    through ``load_reranker`` like any reranker: its ``prompt()`` renders the training prompts."""
    from rankwise.llm.engines.transformers import TransformersBackend

    backend = TransformersBackend(name, name=name, torch_model=model, tokenizer=tokenizer,
                                  device=str(model.device), dtype=model.dtype)
    return load_reranker(METHOD, name, backend=backend, **method_options(g))


def load_trained(model: str | Path, g: GrpoConfig, dtype: str = "auto") -> Groupwise:
    """A model (the merged output directory, or the untrained start) as the method GRPO trains, on the
    transformers engine that training used. No output cache: a retrained directory keeps its name."""
    return load_reranker(METHOD, str(model), engine="transformers", dtype=dtype, cache=False,
                         **method_options(g))


def training_text(prompt: str, tokenizer) -> str:
    """``prompt`` as TRL must be given it to feed the model the method's tokens: engines tokenize prompts
    without special tokens, TRL with them, so a leading BOS is dropped where the tokenizer adds one itself.

    Why text and not a conversational dataset: TRL renders conversational prompts with
    ``add_generation_prompt=True`` and its own template call; the method's prompt ends inside the started
    assistant turn (the answer prefix), exactly as it reranks."""
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return prompt[len(bos):]
    return prompt


def grpo_dataset(groups: Sequence[Group], method: Groupwise, tokenizer, seed: int):
    """TRL rows: the ``prompt`` the method renders (passages shuffled, seeded: the positive must not always
    come first), the ``labels`` (grades clipped to 0-3) in prompt order and the method's ``answer_prefix``,
    which the rewards put back in front of each completion."""
    from datasets import Dataset

    prompts, labels = [], []
    for n, g in enumerate(groups):
        order = list(range(len(g.texts)))
        random.Random(seed * 100_003 + n).shuffle(order)
        prompts.append(training_text(method.prompt(g.query, [g.texts[i] for i in order]), tokenizer))
        labels.append([min(g.labels[i], MAX_GRADE) for i in order])
    return Dataset.from_dict({"prompt": prompts, "labels": labels,
                              "answer_prefix": [method.answer_prefix] * len(groups)})


def load_causal_lm(model: str, dtype: str = "float32"):
    """Tokenizer and causal LM (float32 unless ``dtype`` says otherwise) from a registry name (GGUF models:
    their converted transformers directory), a local directory or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rankwise.llm.models import hf_dir_for_gguf, resolve_model

    resolved = resolve_model(model)
    source = str(hf_dir_for_gguf(resolved.gguf_file) if resolved.gguf_file else resolved.source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype), tokenizer


SPREAD_KEYS = ("reward_std", "frac_reward_zero_std", "completions/mean_length")
"""Logged beside the rewards: GRPO learns nothing from a prompt whose completions all score the same."""


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first points average what there is)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _reward_log(path: Path):
    from transformers import TrainerCallback

    class RewardLog(TrainerCallback):
        """Keeps the mean reward (and each reward's mean) of every logged step."""

        def __init__(self):
            self.rows: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.rows.append({"step": state.global_step, "reward": logs["reward"],
                                  **{k: logs[k] for k in SPREAD_KEYS if k in logs},
                                  **{k: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")}})
                path.write_text(json.dumps(self.rows, indent=1) + "\n", encoding="utf-8")

    return RewardLog()


def plot_rewards(rows: list[dict], path: Path) -> bool:
    """Mean reward per step as a PNG; False (nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no reward plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    total = [r["reward"] for r in rows]
    window = max(1, len(rows) // 8)
    ax.plot(steps, total, label="total (weighted), per step", lw=1, color="C0", alpha=0.45)
    ax.plot(steps, moving_average(total, window), label=f"total, mean of {window} steps", lw=2.5, color="C0")
    for n, key in enumerate(sorted({k for r in rows for k in r if k.startswith("rewards/")}), 1):
        ax.plot(steps, moving_average([r.get(key, 0.0) for r in rows], window),
                label=f"{key.split('/')[1]}, mean of {window}", lw=1, color=f"C{n}")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def train_grpo(config: TrainConfig, output: Path, resume: bool = False) -> dict:
    """GRPO + LoRA on groupwise prompts built from ``config.data``; writes ``output`` (see module doc)."""
    import torch
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, GRPOTrainer

    d, t, g = config.data, config.training, config.grpo
    started = time.monotonic()
    split = training_split(d, g.group_size)
    groups, train_qids, dev_qids = split.groups, split.train_qids, split.dev_qids
    bf16 = use_bf16(t.dtype)
    # bf16 where it is native: the frozen base weights in bf16 (generation and the forward passes run 2-4x
    # faster on CPUs with avx512_bf16 / AMX than under fp32 weights); PEFT keeps the LoRA weights in fp32.
    model, tokenizer = load_causal_lm(config.model, "bfloat16" if bf16 else "float32")
    method = training_method(model, tokenizer, config.model, g)
    dataset = grpo_dataset(groups, method, tokenizer, d.seed)
    funcs, weights = reward_functions(g.rewards, method.template.answer_regex, g.ndcg_k)
    del method  # the engine's copy of the LM head goes with it
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    args = GRPOConfig(
        output_dir=str(output / CHECKPOINTS), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size * g.num_generations, num_generations=g.num_generations,
        gradient_accumulation_steps=t.gradient_accumulation, learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler, weight_decay=t.weight_decay,
        max_completion_length=g.max_completion_length, temperature=g.temperature, beta=g.beta,
        reward_weights=weights, bf16=bf16, use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=False, seed=t.seed, data_seed=t.seed, logging_steps=1,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, report_to="none")
    budget = TimeBudget(t.max_minutes, t.warmup_ratio) if t.max_minutes else None
    log = _reward_log(output / "rewards.json")
    peft_config = LoraConfig(r=g.lora_r, lora_alpha=g.lora_alpha, lora_dropout=g.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = with_time_schedule(GRPOTrainer, budget)(
        model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, callbacks=[*budget_callbacks(budget), log])
    checkpoint = get_last_checkpoint(str(output / CHECKPOINTS)) if resume and (output / CHECKPOINTS).is_dir() \
        else None
    train_out = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output / "adapter"))
    if bf16:  # merge into fp32 base weights: small LoRA updates would round away in bf16 weights
        from peft import PeftModel

        base, _ = load_causal_lm(config.model)
        merged = PeftModel.from_pretrained(base, str(output / "adapter")).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    rows = log.rows
    results = {
        "kind": "grpo", "model": config.model, "method": METHOD, "method_options": method_options(g),
        "steps": trainer.state.global_step,
        "train_loss": train_out.training_loss, "train_groups": len(groups), "train_queries": len(train_qids),
        "dev_queries": len(dev_qids), "bf16": args.bf16, "resumed_from": checkpoint,
        "seconds": round(time.monotonic() - started, 1),
        "mean_reward": sum(r["reward"] for r in rows) / len(rows) if rows else None,
        "first_reward": rows[0]["reward"] if rows else None, "last_reward": rows[-1]["reward"] if rows else None,
        "plot": plot_rewards(rows, output / "rewards.png") if rows else False,
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results
