"""GRPO for LLM rerankers on TRL's GRPOTrainer with a PEFT LoRA adapter, for any method a target can
reward (``grpo.target``: pointwise.graded / yes_no, groupwise.generate, setwise.reasoning, listwise.window;
see rankwise.train.grpo_targets).

Train and inference are one code path: the training prompts are rendered by the method itself (built over
the policy being trained, ``training_method``), passages shuffled with their labels (seeded); the rewards
read completions with the method's parser and score them with named, weighted components
(rankwise.train.rewards); evaluation loads the output directory as that method with the same options
(``load_trained``) and reranks through ``rankwise.pipeline.run``. The output directory holds the LoRA
adapter (``adapter/``), the merged model (a plain transformers directory, so ``--model DIR`` loads it),
the config, ``rewards.json`` (per step: the reward and each component, the spread within a prompt's
completions, the share of prompts whose completions all scored the same, distinct answers, the share of
the most common answer, the KL to the start when ``beta`` > 0) and ``rewards.png``.

What the first run (a collapse to one answer for every group) taught: every step logs how many distinct
answers the policy gave; when one answer makes up ``collapse_share`` of the answers of the last
``collapse_window`` steps, the run warns or stops (``on_collapse``) and records the step. Sampled answers
can vary while the greedy one is the same for every prompt, so the end of training also answers a probe of
training prompts greedily and records (and warns about) how many distinct answers it got.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rankwise.pipeline.loading import load_reranker
from rankwise.plotting import pyplot
from rankwise.train.budget import TimeBudget, budget_callbacks, resume_budget, with_time_schedule
from rankwise.train.config import GrpoConfig, TrainConfig, save_config
from rankwise.train.crossencoder_trainer import CHECKPOINTS, CONFIG_FILE, RESULTS_FILE, use_bf16
from rankwise.train.groups import Group, training_split
from rankwise.train.grpo_targets import SIZE_OPTION, Target, family, target_for
from rankwise.train.probe import ProbePrompt, greedy_answers, spread
from rankwise.train.rewards import AnswerLog, reward_functions

if TYPE_CHECKING:
    from rankwise.methods.method import Method

logger = logging.getLogger(__name__)


def method_options(g: GrpoConfig) -> dict[str, Any]:
    """The options of ``g.target`` that the config trains (``grpo.options`` and the passages per prompt):
    evaluation runs the method with the same ones."""
    size = SIZE_OPTION.get(family(g.target))
    return {**g.options, **({size: g.group_size} if size else {})}


def training_method(model, tokenizer, name: str, g: GrpoConfig) -> Method:
    """``g.target`` over the policy being trained (the same weights, left on their device and dtype), loaded
    through ``load_reranker`` like any reranker: it renders the training prompts."""
    from rankwise.llm.engines.transformers import TransformersBackend

    backend = TransformersBackend(name, name=name, torch_model=model, tokenizer=tokenizer,
                                  device=str(model.device), dtype=model.dtype)
    return load_reranker(g.target, name, backend=backend, **method_options(g))


def training_target(method: Method, g: GrpoConfig) -> Target:
    return target_for(method, 1 if family(g.target) == "pointwise" else g.group_size)


def load_trained(model: str | Path, g: GrpoConfig, dtype: str = "auto") -> Method:
    """A model (the merged output directory, or the untrained start) as the method GRPO trains, on the
    transformers engine that training used. No output cache: a retrained directory keeps its name."""
    return load_reranker(g.target, str(model), engine="transformers", dtype=dtype, cache=False,
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


def grpo_dataset(groups: Sequence[Group], target: Target, tokenizer, seed: int):
    """TRL rows from ``target.rows`` (the method's prompts, labels in prompt order, the answer prefix the
    rewards put back in front of each completion, the list a pointwise prompt belongs to)."""
    from datasets import Dataset

    rows = target.rows(groups, seed)
    return Dataset.from_dict({"prompt": [training_text(r["prompt"], tokenizer) for r in rows],
                              **{k: [r[k] for r in rows] for k in ("labels", "answer_prefix", "list_id")}})


SPREAD_KEYS = ("reward_std", "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio",
               "kl", "entropy")
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


class CollapseCheck:
    """The answers of the last ``window`` steps; collapsed when one answer makes up ``share`` of them."""

    def __init__(self, window: int, share: float):
        self.window = window
        self.share = share
        self.steps: deque[list[str]] = deque(maxlen=window)

    def add(self, keys: list[str]) -> dict[str, float]:
        """This step's answers; returns its distinct-answer share and the most common answer's share."""
        self.steps.append(keys)
        if not keys:
            return {}
        top = Counter(keys).most_common(1)[0][1]
        return {"answers/distinct": len(set(keys)) / len(keys), "answers/top_share": top / len(keys)}

    def collapsed(self) -> tuple[str, float] | None:
        """(the answer, its share) when the window is full and one answer dominates it, else None."""
        keys = [k for step in self.steps for k in step]
        if len(self.steps) < self.window or not keys:
            return None
        answer, count = Counter(keys).most_common(1)[0]
        return (answer, count / len(keys)) if count / len(keys) >= self.share else None


def _reward_log(path: Path, answers: AnswerLog, check: CollapseCheck, on_collapse: str):
    from transformers import TrainerCallback

    class RewardLog(TrainerCallback):
        """Keeps, per logged step, the reward, each component's mean, the spread, the answers' variety and
        the KL; warns or stops when the policy collapses to one answer."""

        def __init__(self):
            self.rows: list[dict] = []
            self.collapsed_at: int | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs:
                return
            row = {"step": state.global_step, "reward": logs["reward"],
                   **{k: logs[k] for k in SPREAD_KEYS if k in logs},
                   **{k: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")},
                   **check.add(answers.take())}
            self.rows.append(row)
            path.write_text(json.dumps(self.rows, indent=1) + "\n", encoding="utf-8")
            found = check.collapsed()
            if found and self.collapsed_at is None:
                self.collapsed_at = state.global_step
                logger.warning("policy collapse at step %d: %.0f%% of the answers of the last %d steps are %r%s",
                               state.global_step, 100 * found[1], check.window, found[0],
                               "; stopping" if on_collapse == "stop" else "")
                if on_collapse == "stop":
                    control.should_training_stop = True
                    control.should_save = True

    return RewardLog()


def plot_rewards(rows: list[dict], path: Path) -> bool:
    """Mean reward per step as a PNG; False (nothing written) when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
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
    """GRPO + LoRA on the prompts of ``config.grpo.target`` built from ``config.data``; writes ``output``
    (see module doc)."""
    import torch
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, GRPOTrainer

    from rankwise.train.sft import load_lm, merge_adapter

    d, t, g = config.data, config.training, config.grpo
    started = time.monotonic()
    pointwise = family(g.target) == "pointwise"
    split = training_split(d, d.group_size if pointwise else g.group_size)
    groups, train_qids, dev_qids = split.groups, split.train_qids, split.dev_qids
    bf16 = use_bf16(t.dtype)
    # bf16 where it is native: the frozen base weights in bf16 (generation and the forward passes run 2-4x
    # faster on CPUs with avx512_bf16 / AMX than under fp32 weights); PEFT keeps the LoRA weights in fp32.
    model, tokenizer = load_lm(config.model, torch.bfloat16 if bf16 else torch.float32)
    target = training_target(training_method(model, tokenizer, config.model, g), g)
    dataset = grpo_dataset(groups, target, tokenizer, d.seed)
    target.release_backend()
    answers = AnswerLog()
    funcs, weights = reward_functions(g.rewards, target, g.reward_k, float(d.min_grade), answers)
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / CONFIG_FILE)
    args = GRPOConfig(
        output_dir=str(output / CHECKPOINTS), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size * g.num_generations, num_generations=g.num_generations,
        gradient_accumulation_steps=t.gradient_accumulation, learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler, weight_decay=t.weight_decay,
        max_completion_length=g.max_completion_length, temperature=g.temperature, beta=g.beta,
        reward_weights=weights, bf16=bf16, use_cpu=not torch.cuda.is_available(),
        shuffle_dataset=False,  # rows come in a seeded order, a pointwise list's passages side by side
        activation_checkpointing=False, seed=t.seed, data_seed=t.seed, logging_steps=1,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, report_to="none")
    budget = TimeBudget(t.max_minutes, t.warmup_ratio) if t.max_minutes else None
    log = _reward_log(output / "rewards.json", answers, CollapseCheck(g.collapse_window, g.collapse_share),
                      g.on_collapse)
    peft_config = LoraConfig(r=g.lora_r, lora_alpha=g.lora_alpha, lora_dropout=g.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = with_time_schedule(GRPOTrainer, budget)(
        model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, callbacks=[*budget_callbacks(budget), log])
    checkpoint = get_last_checkpoint(str(output / CHECKPOINTS)) if resume and (output / CHECKPOINTS).is_dir() \
        else None
    resume_budget(budget, checkpoint)
    train_out = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output / "adapter"))
    probe = [ProbePrompt(tokenizer(row["prompt"])["input_ids"], row["answer_prefix"], len(row["labels"]))
             for row in (dataset[i] for i in spread(range(len(dataset))))]
    greedy = greedy_answers(trainer.model, tokenizer, probe, target, g.max_completion_length)
    merged = merge_adapter(config.model, output / "adapter") if bf16 else trainer.model.merge_and_unload()
    merged.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    rows = log.rows
    results = {
        "kind": "grpo", "model": config.model, "method": g.target, "method_options": method_options(g),
        "steps": trainer.state.global_step, "prompts": len(dataset),
        "train_loss": train_out.training_loss, "train_groups": len(groups), "train_queries": len(train_qids),
        "dev_queries": len(dev_qids), "bf16": args.bf16, "resumed_from": checkpoint,
        "seconds": round(time.monotonic() - started, 1), "collapsed_at": log.collapsed_at,
        "greedy_answers": greedy,
        "mean_reward": sum(r["reward"] for r in rows) / len(rows) if rows else None,
        "first_reward": rows[0]["reward"] if rows else None, "last_reward": rows[-1]["reward"] if rows else None,
        "plot": plot_rewards(rows, output / "rewards.png") if rows else False,
    }
    (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results
