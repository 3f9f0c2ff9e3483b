"""Running a training config: one kind, or a multi-stage recipe (``stages:``) where each stage trains from
the previous stage's output (ProRank: a warm-up then fine-grained learning; ERank: SFT then GRPO).

A stage is a name plus the fields it overrides, section by section: ``grpo: {rewards: {...}}`` replaces the
base config's ``grpo.rewards`` and keeps its other ``grpo`` fields. Every stage but the last writes
``OUTPUT/stages/<n>-<name>/``; the last writes ``OUTPUT`` itself, so ``--model OUTPUT`` is the finished
model. With ``--resume`` a stage whose directory holds its results is not trained again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rankwise.train.config import TrainConfig, parse_config

logger = logging.getLogger(__name__)

STAGES_DIR = "stages"


def train_kind(config: TrainConfig, output: Path, resume: bool = False) -> dict:
    """Train one config of any kind into ``output``; the trainer's results."""
    if config.kind == "crossencoder":
        from rankwise.train.crossencoder_trainer import train_crossencoder

        return train_crossencoder(config, output, resume=resume)
    if config.kind == "embedding":
        from rankwise.train.embedding_trainer import train_embedding

        return train_embedding(config, output, resume=resume)
    if config.kind in ("sft", "contrastive"):
        from rankwise.train.sft import train_sft

        return train_sft(config, output, resume=resume)
    from rankwise.train.grpo import train_grpo

    return train_grpo(config, output, resume=resume)


def stage_configs(config: TrainConfig, output: Path) -> list[tuple[str, TrainConfig, Path]]:
    """(name, config, output directory) of every stage, models chained; one entry without stages."""
    if not config.stages:
        return [("train", config, output)]
    base = {k: v for k, v in config.to_dict().items() if k != "stages"}
    chained = []
    model = config.model
    for n, stage in enumerate(config.stages, 1):
        values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        for key, value in stage.items():
            if key == "name":
                continue
            values[key] = {**(values[key] or {}), **value} if isinstance(value, dict) else value
        values["model"] = model
        last = n == len(config.stages)
        where = output if last else output / STAGES_DIR / f"{n}-{stage['name']}"
        values["output"] = str(where)
        chained.append((stage["name"], parse_config(values, f"<stage {stage['name']}>"), where))
        model = str(where)
    return chained


def train(config: TrainConfig, output: Path, resume: bool = False) -> dict:
    """Train every stage in turn (see the module doc); the last stage's results, with a ``stages`` list
    (name, output, steps, seconds, mean reward) when the config has stages."""
    from rankwise.train.crossencoder_trainer import RESULTS_FILE

    chained = stage_configs(config, output)
    done = []
    results: dict = {}
    for name, stage, where in chained:
        finished = where / RESULTS_FILE
        if resume and finished.is_file() and where != output:
            logger.warning("stage %s: already trained in %s, not trained again", name, where)
            results = json.loads(finished.read_text(encoding="utf-8"))
        else:
            if len(chained) > 1:
                logger.warning("stage %s (%s) from %s -> %s", name, stage.kind, stage.model, where)
            results = train_kind(stage, where, resume=resume)
        done.append({"name": name, "kind": stage.kind, "output": str(where), "model": stage.model,
                     **{k: results.get(k) for k in ("steps", "seconds", "mean_reward", "train_loss")}})
    if config.stages:
        results = {**results, "stages": done}
        (output / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    return results
