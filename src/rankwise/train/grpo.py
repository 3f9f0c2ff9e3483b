"""GRPO for LLM rerankers in the groupwise format, on TRL's GRPOTrainer with a PEFT LoRA adapter.

A prompt shows a query and a group of passages (shuffled, seeded); the model answers a JSON list of one
score (0-3) per passage. The assistant turn is prefilled with the start of the answer (``answer_prefix``,
``[``), so a small model continues a list instead of chatting: without it SmolLM2-135M's answers were all
broken, every reward -1 and GRPO's advantages zero. The same rendered prompt is used for evaluation
(``groupwise_rerank``). Rewards (rankwise.train.rewards): nDCG@k of the induced ranking, a distributional
reward against the graded labels, and a format reward. The output directory holds the LoRA adapter
(``adapter/``), the merged model (a plain transformers directory, so ``--model DIR`` loads it), the
config, ``rewards.json`` (mean reward per logged step) and ``rewards.png`` when matplotlib is installed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Sequence

from rankwise.data import Run
from rankwise.train.budget import TimeBudget, budget_callbacks, with_time_schedule
from rankwise.train.config import GrpoConfig, TrainConfig, save_config
from rankwise.train.crossencoder_trainer import CHECKPOINTS, CONFIG_FILE, RESULTS_FILE, use_bf16
from rankwise.train.groups import Group, training_split
from rankwise.train.rewards import MAX_GRADE, completion_text, parse_scores, reward_functions
from rankwise.types import Request

logger = logging.getLogger(__name__)

PROMPT = ("Rate how relevant each passage is to the query, from 0 (irrelevant) to 3 (perfectly relevant).\n"
          "Query: {query}\n\n{passages}\n\n"
          "Answer with a JSON list of {n} integers from 0 to 3, one score per passage in order: "
          "[score of passage 1, ..., score of passage {n}].")
ANSWER_PREFIX = GrpoConfig.answer_prefix
"""The assistant turn starts with this; the model writes the rest of the list."""


def _clip_words(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def groupwise_prompt(query: str, passages: Sequence[str], passage_words: int = 48) -> str:
    """The user message of the groupwise format: numbered passages, a JSON list of scores asked for.
    Passages are numbered ``Passage i:``, not ``[i]``: after a ``[`` prefix small models copy ``[i]`` markers.
    No concrete example answer: greedy SmolLM2 copied an example list (``[0, 3, 2, 1, 0]``) for every group,
    before and after GRPO, so the ranking was the example's whatever the passages said."""
    listed = "\n".join(f"Passage {i}: {_clip_words(p, passage_words)}" for i, p in enumerate(passages, 1))
    return PROMPT.format(query=query, passages=listed, n=len(passages))


def groupwise_messages(query: str, passages: Sequence[str], passage_words: int = 48,
                       answer_prefix: str = ANSWER_PREFIX) -> list[dict]:
    """The user turn and, when ``answer_prefix`` is set, the started assistant turn."""
    messages = [{"role": "user", "content": groupwise_prompt(query, passages, passage_words)}]
    if answer_prefix:
        messages.append({"role": "assistant", "content": answer_prefix})
    return messages


def render_prompt(tokenizer, messages: Sequence[dict]) -> str:
    """The prompt text the model continues: the chat template with a generation prompt, or, when the last
    message is the assistant's, that turn left open (``continue_final_message``) so the completion goes on
    from the prefix. Training and ``groupwise_rerank`` both tokenize this text with ``tokenizer(text)``.

    Why text and not a conversational dataset: TRL's GRPOTrainer renders conversational prompts with
    ``add_generation_prompt=True`` always, which would close the prefilled assistant turn and open a new one.
    """
    prefill = messages[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=not prefill,
                                         continue_final_message=prefill)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]  # the tokenizer adds it again
    return text


def grpo_dataset(groups: Sequence[Group], tokenizer, passage_words: int, seed: int,
                 answer_prefix: str = ANSWER_PREFIX):
    """TRL rows: the rendered ``prompt`` (standard format: text that ends inside the assistant turn), the
    ``labels`` (grades clipped to 0-3) in prompt order and the ``answer_prefix`` the rewards put back."""
    from datasets import Dataset

    prompts, labels = [], []
    for n, g in enumerate(groups):
        order = list(range(len(g.texts)))
        random.Random(seed * 100_003 + n).shuffle(order)  # the positive must not always come first
        messages = groupwise_messages(g.query, [g.texts[i] for i in order], passage_words, answer_prefix)
        prompts.append(render_prompt(tokenizer, messages))
        labels.append([min(g.labels[i], MAX_GRADE) for i in order])
    return Dataset.from_dict({"prompt": prompts, "labels": labels, "answer_prefix": [answer_prefix] * len(groups)})


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
    dataset = grpo_dataset(groups, tokenizer, g.passage_words, d.seed, g.answer_prefix)
    funcs, weights = reward_functions(g.rewards, g.ndcg_k)
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
        "kind": "grpo", "model": config.model, "steps": trainer.state.global_step,
        "train_loss": train_out.training_loss, "train_groups": len(groups), "train_queries": len(train_qids),
        "dev_queries": len(dev_qids), "bf16": args.bf16, "resumed_from": checkpoint,
        "seconds": round(time.monotonic() - started, 1),
        "mean_reward": sum(r["reward"] for r in rows) / len(rows) if rows else None,
        "first_reward": rows[0]["reward"] if rows else None, "last_reward": rows[-1]["reward"] if rows else None,
        "plot": plot_rewards(rows, output / "rewards.png") if rows else False,
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results


def groupwise_rerank(model, tokenizer, requests: Sequence[Request], top_k: int = 20, group_size: int = 5,
                     passage_words: int = 48, max_new_tokens: int = 32, answer_prefix: str = ANSWER_PREFIX,
                     answers: list[str] | None = None) -> tuple[Run, int]:
    """Rerank each request's top ``top_k`` in consecutive groups with greedy groupwise answers (scores
    compared across groups, as GroupRank does); the rest follow. The prompt is rendered exactly as in
    training (``grpo_dataset``), prefix included; generation stops at the closing ``]``. Returns the run
    and the number of groups whose answer did not parse (their passages keep first-stage order at score 0);
    each group's answer (prefix included) is appended to ``answers`` when one is given."""
    import torch

    failures = 0
    run: Run = {}
    model.eval()
    for r in requests:
        head = list(r.candidates[:top_k])
        scores: list[float] = []
        for start in range(0, len(head), group_size):
            window = head[start:start + group_size]
            messages = groupwise_messages(r.query.text, [c.content for c in window], passage_words, answer_prefix)
            ids = tokenizer(render_prompt(tokenizer, messages), return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, stop_strings=["]"], tokenizer=tokenizer)
            text = completion_text(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                                   answer_prefix)
            if answers is not None:
                answers.append(text)
            status, parsed = parse_scores(text, len(window))
            if status != "ok":
                failures += 1
                parsed = [0.0] * len(window)
            scores.extend(parsed)
        ranked = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        docs = {head[i].docid: float(len(head) - n) for n, i in enumerate(ranked)}
        for n, c in enumerate(r.candidates[top_k:], 1):
            docs[c.docid] = -float(n)
        run[r.query.qid] = docs
    return run, failures
