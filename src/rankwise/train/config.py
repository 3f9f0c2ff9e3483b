"""Training configs: a YAML file -> typed, validated dataclasses (errors name the file and the field)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from rankwise.data._io import read_yaml
from rankwise.errors import InputError

OBJECTIVES = ("bce", "contrastive", "listnet", "lambda", "ranknet", "margin-mse")
"""Cross-encoder objectives (sentence-transformers losses; see rankwise.train.crossencoder_trainer)."""

KINDS = ("crossencoder", "grpo", "embedding", "sft", "contrastive")

EMBEDDING_STAGES = ("contrastive", "listwise", "both")
SFT_TARGETS = ("pointwise.yes_no", "pointwise.graded", "listwise.window", "listwise.full", "listwise.first",
               "setwise.heapsort", "setwise.bubblesort", "setwise.tournament", "groupwise.generate")
GRPO_FAMILIES = ("pointwise", "groupwise", "setwise", "listwise")
STAGE_FIELDS = {"name", "kind", "data", "training", "grpo", "sft", "teacher"}
"""What a stage of a multi-stage recipe may override (its model is the previous stage's output)."""
"""Methods whose prompt ``kind: sft`` / ``contrastive`` can train (rankwise.train.targets)."""


@dataclass
class SyntheticQueriesConfig:
    """``data.queries: synthetic``: an LLM writes the query each sampled document answers (InPars-style)."""

    model: str = "qwen2.5-0.5b"
    """The generator: a registry name, a local directory or GGUF file, or a hub id."""
    num_documents: int = 200
    """Documents sampled from the corpus (seeded by ``data.seed``), one query each."""
    filter_top_k: Optional[int] = 20
    """Keep a query only when BM25 ranks its source document in this top k (null: keep every query)."""
    max_passage_tokens: int = 192
    max_new_tokens: int = 32
    engine: str = "auto"
    dtype: str = "auto"


@dataclass
class DataConfig:
    """Where training groups come from: queries + qrels, a first stage for negatives, the grouping."""

    dataset: str = "scifact"
    """Documents (and, with ``queries: dataset``, queries and qrels): an alias, a directory or an ir_datasets id."""
    queries: str = "dataset"
    """``dataset`` (the dataset's own judged queries), ``scifact-train`` (SciFact's training claims),
    ``synthetic`` (generated over the corpus, see ``synthetic``), or a topics file (TREC tsv / BEIR jsonl)
    judged by ``qrels``."""
    qrels: Optional[str] = None
    """TREC qrels file for a topics file given as ``queries``."""
    first_stage: str = "bm25"
    """Negatives: a first stage the dataset ships (``bm25`` on DL19/20), a TREC run file, or ``bm25`` retrieved
    over the dataset's corpus (cached)."""
    depth: int = 100
    """Hard negatives are drawn from the first stage's top ``depth``."""
    group_size: int = 8
    """Documents per training group: one positive and ``group_size - 1`` others."""
    groups_per_query: int = 4
    """At most this many groups per query (one per positive, positives taken best grade first)."""
    min_grade: int = 1
    """Grades >= this count as positive; lower or unjudged candidates are negatives (grade kept as label)."""
    max_positives: int = 1
    """Positives per group: besides its lead positive, a group takes 0 to ``max_positives - 1`` of the query's
    other positives (count drawn per group). For ``kind: sft`` (not ``contrastive``) and ``grpo``, whose targets
    and rewards read every document's grade; the other kinds take the first document as the one positive."""
    dev_fraction: float = 0.1
    """Share of training queries held out (by query, never by pair) for evaluation during training."""
    max_queries: Optional[int] = None
    """Use only the first N training queries (quick checks)."""
    teacher: Optional[str] = None
    """TREC run whose scores a ``margin-mse`` student learns (documents it lacks get its per-query minimum)."""
    teacher_scale: float = 1.0
    """Multiply teacher scores by this (bring cosine similarities to logit range, for example)."""
    unjudged: bool = False
    """With a teacher (``teacher:``, or ``data.teacher`` for margin-mse): also train on queries without any
    judgment. Such a query's groups take one of the first stage's top ``groups_per_query`` documents and
    ``group_size - 1`` others from its top ``depth``; the teacher's scores are their only labels."""
    synthetic: SyntheticQueriesConfig = field(default_factory=SyntheticQueriesConfig)
    """How ``queries: synthetic`` are generated and filtered."""
    held_out: list = field(default_factory=list)
    """Datasets (aliases or directories) whose judged queries are never trained on, by id and by text
    (e.g. ``[dl19]`` when training on DL20 and evaluating on DL19)."""
    seed: int = 13


@dataclass
class TrainingConfig:
    """Optimisation settings shared by every kind (mapped onto transformers' TrainingArguments)."""

    epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many steps (-1: run ``epochs``); ``--max-steps`` overrides it."""
    max_minutes: Optional[float] = None
    """Stop (saving the model) once this much wall time has passed."""
    batch_size: int = 4
    """Groups per step (bce: pairs per step = batch_size * group_size)."""
    gradient_accumulation: int = 1
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scheduler: str = "linear"
    weight_decay: float = 0.01
    max_length: int = 256
    """Tokens per (query, document) pair (cross-encoder) or per prompt (GRPO)."""
    save_steps: int = 200
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_steps: Optional[int] = None
    """Evaluate on the dev queries every N steps (None: only at the end)."""
    dtype: str = "auto"
    """auto (bf16 on GPUs and CPUs that have it natively) | float32 | bfloat16."""
    gradient_checkpointing: bool = False
    """sft / contrastive: recompute activations in the backward pass (much less memory, ~30% more time)."""
    seed: int = 13


@dataclass
class CrossEncoderConfig:
    objective: str = "listnet"
    curriculum: bool = False
    """Order training groups easy -> hard (by the first-stage rank of the positive) instead of shuffling."""
    in_batch_negatives: int = 0
    """contrastive: also score this many other queries' documents per query (0: InfoNCE over the group)."""
    temperature_scale: float = 10.0
    """contrastive: logits (after a sigmoid) are multiplied by this before the softmax."""
    pos_weight: float | None = None
    """bce: loss weight of a relevant pair; None: the negatives per positive in the training data, so both
    classes weigh alike (sentence-transformers' recipe); 1: unweighted."""


@dataclass
class EmbeddingConfig:
    """``kind: embedding``: E2Rank's two stages for a bi-encoder (see rankwise.train.embedding_trainer)."""

    stages: str = "both"
    """``contrastive`` (InfoNCE, BM25 hard negatives), ``listwise`` (RankNet from the pseudo query) or ``both``."""
    m: int = 5
    """Candidates in the pseudo query (embedding.e2rank's ``m``; evaluate with the same)."""
    prompt: str = "embedding.e2rank"
    """The e2rank prompt template (name or YAML file) the pseudo query is rendered with."""
    scale: float = 20.0
    """Cosine similarities are multiplied by this (1 / temperature) in every loss."""
    infonce_weight: float = 1.0
    """listwise: weight of an InfoNCE term on the plain query (keeps cosine and dense retrieval)."""
    contrastive_share: float = 0.5
    """both: the share of ``training.max_minutes`` the contrastive stage gets."""


@dataclass
class GrpoConfig:
    """``kind: grpo``: GRPO with a LoRA adapter for a method's own prompt and parser (rankwise.train.grpo)."""

    target: str = "groupwise.generate"
    """The method trained (and the one that reranks with the output): pointwise.graded, pointwise.yes_no,
    groupwise.generate, setwise.reasoning, listwise.window, ..."""
    options: dict = field(default_factory=dict)
    """Options of that method (prompt, max_passage_tokens, answer_prefix, reasoning_tokens, ...); evaluation
    runs it with the same ones."""
    group_size: int = 5
    """Passages per prompt (the method's group_size / set_size / window_size); pointwise targets show one
    passage per prompt and train on lists of ``data.group_size``."""
    num_generations: int = 4
    """Completions sampled per prompt (GRPO's group)."""
    max_completion_length: int = 64
    temperature: float = 1.0
    rewards: dict = field(default_factory=lambda: {"ndcg": 1.0, "distribution": 0.5, "format": 1.0})
    """Reward components and their weights (rankwise.train.rewards: format, ndcg, recall, rbo, distribution,
    label, coarse, pooled)."""
    reward_k: int = 10
    """The cut-off of the ndcg and recall rewards."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    beta: float = 0.0
    """KL coefficient against the start (0: no reference model; > 0 also logs the KL)."""
    collapse_window: int = 8
    """Steps over which the collapse check counts answers."""
    collapse_share: float = 0.95
    """Collapse: one answer makes up this share of the answers of the last ``collapse_window`` steps."""
    on_collapse: str = "stop"
    """What a collapse does: ``stop`` (save the model and end the run) or ``warn``."""


@dataclass
class SftConfig:
    """``kind: sft`` and ``kind: contrastive``: a causal LM trained on a method's own inference prompt."""

    target: str = "pointwise.yes_no"
    """The method whose prompt and answer are trained (pointwise.yes_no / graded, listwise.window / full / first,
    setwise.heapsort / bubblesort / tournament); the model directory then reranks with ``--method`` this. For
    listwise and setwise, one window or set is one group of ``data.group_size`` passages."""
    options: dict = field(default_factory=dict)
    """Options of that method (prompt, max_passage_tokens); give the same ones at inference."""
    lora: bool = True
    """LoRA through PEFT (merged into the saved weights); false: full fine-tuning."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    temperature: float = 1.0
    """contrastive: InfoNCE over the yes/no log-odds of a group divided by this."""
    first_weight: float = 1.0
    """listwise.first: weight of FIRST's ranking loss on the first identifier's logits beside the language-model
    loss on the permutation."""


@dataclass
class TeacherConfig:
    """Distillation: a rankwise method + model that scores the training candidates (rankwise.train.teacher)."""

    method: str = "pointwise.yes_no"
    model: str = "qwen2.5-1.5b"
    options: dict = field(default_factory=dict)
    engine: str = "auto"
    dtype: str = "auto"
    scale: float = 1.0
    """sft (pointwise.yes_no student): the group's teacher distribution is softmax(scale * teacher scores)."""


@dataclass
class TrainConfig:
    kind: str = "crossencoder"
    model: str = "minilm-l6"
    """Initial model: a registry name, a local directory (or .zip / .gguf) or a hub id."""
    output: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    crossencoder: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    teacher: Optional[TeacherConfig] = None
    """Distil from a teacher: pointwise.yes_no students learn its score distribution over each group (KL),
    listwise and setwise students its order, groupwise students its scores on the prompt's scale, instead of
    the qrels' grades (``kind: sft``, or the sft stage of a recipe)."""
    stages: list = field(default_factory=list)
    """A multi-stage recipe (rankwise.train.stages): each stage (a name and the fields it overrides) trains
    from the previous stage's output; empty: one stage, this config."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, hint: Any, where: str, path: Path) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where, path)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, path)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 2e-5 as a string
        try:
            return float(value)
        except ValueError:
            pass
    expected = origin or hint
    if expected in (int, str, bool, dict, list) and isinstance(value, expected) and \
            not (expected is int and isinstance(value, bool)):
        return value
    raise InputError(f"field {where!r}: expected {getattr(expected, '__name__', expected)}, "
                     f"got {value!r}", path)


def _build(cls: type, values: Any, where: str, path: Path):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise InputError(f"field {where or 'top level'!r}: expected a mapping, got {values!r}", path)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise InputError(f"unknown field {prefix + unknown[0]!r} (known: {', '.join(sorted(names))})", path)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k, path) for k, v in values.items()}
    return cls(**kwargs)


def _check(config: TrainConfig, path: Path) -> None:
    def bad(name: str, message: str) -> InputError:
        return InputError(f"field {name!r}: {message}", path)

    if config.kind not in KINDS:
        raise bad("kind", f"unknown kind {config.kind!r} (use {' or '.join(KINDS)})")
    if config.crossencoder.objective not in OBJECTIVES:
        raise bad("crossencoder.objective",
                  f"unknown objective {config.crossencoder.objective!r} (use one of {', '.join(OBJECTIVES)})")
    if config.crossencoder.objective == "margin-mse" and config.kind == "crossencoder" and not config.data.teacher:
        raise bad("data.teacher", "objective margin-mse needs a teacher run (a TREC run file with scores)")
    d, t = config.data, config.training
    if d.group_size < 2:
        raise bad("data.group_size", f"needs at least 2 documents (one positive, one negative), got {d.group_size}")
    for name, value in (("data.depth", d.depth), ("data.groups_per_query", d.groups_per_query),
                        ("training.batch_size", t.batch_size), ("training.max_length", t.max_length),
                        ("training.gradient_accumulation", t.gradient_accumulation),
                        ("training.save_steps", t.save_steps), ("training.logging_steps", t.logging_steps)):
        if value < 1:
            raise bad(name, f"must be at least 1, got {value}")
    if d.max_positives < 1:
        raise bad("data.max_positives", f"must be at least 1, got {d.max_positives}")
    if d.max_positives > 1 and config.kind not in ("sft", "grpo"):
        raise bad("data.max_positives", f"kind {config.kind} trains one positive per group (its first document): "
                                        "several positives per group are for kind sft or grpo")
    if d.synthetic.num_documents < 1:
        raise bad("data.synthetic.num_documents", f"must be at least 1, got {d.synthetic.num_documents}")
    if not 0 <= d.dev_fraction < 1:
        raise bad("data.dev_fraction", f"must be in [0, 1), got {d.dev_fraction}")
    distils = config.teacher is not None or (config.kind == "crossencoder"
                                             and config.crossencoder.objective == "margin-mse")
    if d.unjudged and not distils:
        raise bad("data.unjudged", "queries without judgments get their labels from a teacher: add a teacher: "
                                   "block (kind sft) or use objective margin-mse with data.teacher")
    if d.queries not in ("dataset", "scifact-train", "synthetic") and d.qrels is None and not d.unjudged:
        raise bad("data.qrels", f"queries {d.queries!r} is a topics file: give its qrels file too (or, with a "
                                "teacher, data.unjudged: true)")
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise bad("training.max_minutes", f"must be positive, got {t.max_minutes}")
    if config.kind == "embedding":
        e = config.embedding
        if e.stages not in EMBEDDING_STAGES:
            raise bad("embedding.stages", f"unknown {e.stages!r} (use {', '.join(EMBEDDING_STAGES)})")
        if e.m < 1:
            raise bad("embedding.m", f"must be at least 1, got {e.m}")
        if e.scale <= 0:
            raise bad("embedding.scale", f"must be positive, got {e.scale}")
        if e.infonce_weight < 0:
            raise bad("embedding.infonce_weight", f"must be at least 0, got {e.infonce_weight}")
        if not 0 < e.contrastive_share < 1:
            raise bad("embedding.contrastive_share", f"must be in (0, 1), got {e.contrastive_share}")
    if config.kind in ("sft", "contrastive"):
        if config.sft.target not in SFT_TARGETS:
            raise bad("sft.target", f"cannot train {config.sft.target!r} yet (use {' or '.join(SFT_TARGETS)})")
        if config.kind == "contrastive" and config.sft.target != "pointwise.yes_no":
            raise bad("sft.target", "contrastive training scores with the yes/no log-odds: use pointwise.yes_no")
        if config.sft.temperature <= 0:
            raise bad("sft.temperature", f"must be positive, got {config.sft.temperature}")
    if config.teacher is not None:
        from rankwise.methods.registry import method_names

        if config.teacher.method not in method_names():
            raise bad("teacher.method", f"unknown method {config.teacher.method!r}")
        if config.kind != "sft" or config.sft.target == "pointwise.graded":
            raise bad("teacher", "a teacher trains kind sft with a pointwise.yes_no, listwise, setwise or "
                                 "groupwise target (cross-encoders distil from a run file: data.teacher; in a "
                                 "recipe, give the teacher to its sft stage)")
    if config.kind == "grpo":
        _check_grpo(config, bad)
    for n, stage in enumerate(config.stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise bad(f"stages[{n}]", "each stage is a mapping with a name (and the fields it overrides)")
        unknown = sorted(set(stage) - STAGE_FIELDS)
        if unknown:
            raise bad(f"stages[{n}].{unknown[0]}", f"a stage overrides only {', '.join(sorted(STAGE_FIELDS))}")


def _check_grpo(config: TrainConfig, bad: Callable[[str, str], InputError]) -> None:
    from rankwise.methods.registry import check_options, method_names
    from rankwise.train.rewards import COMPONENTS

    g = config.grpo
    if g.num_generations < 2:
        raise bad("grpo.num_generations", "GRPO compares completions: needs at least 2")
    unknown = sorted(set(g.rewards) - set(COMPONENTS))
    if unknown:
        raise bad("grpo.rewards", f"unknown reward {unknown[0]!r} (use {', '.join(COMPONENTS)})")
    if g.target.split(".")[0] not in GRPO_FAMILIES or g.target not in method_names() or \
                    (g.target.startswith("pointwise.") and g.target not in ("pointwise.yes_no", "pointwise.graded")):
        raise bad("grpo.target", f"cannot train {g.target!r} with GRPO (use a {', '.join(GRPO_FAMILIES)} method)")
    try:
        check_options(g.target, g.options)
    except InputError as e:
        raise bad("grpo.options", str(e)) from None
    pointwise = g.target.startswith("pointwise.")
    if not pointwise and g.group_size < 2:
        raise bad("grpo.group_size", f"needs at least 2 documents, got {g.group_size}")
    if "pooled" in g.rewards and not pointwise:
        raise bad("grpo.rewards", "the pooled reward compares pointwise answers: use it with a pointwise target")
    if "pooled" in g.rewards and config.training.batch_size % config.data.group_size:
        raise bad("training.batch_size", f"the pooled reward compares the passages of a list: give a multiple "
                                         f"of data.group_size ({config.data.group_size}) prompts per step")
    if "label" in g.rewards and pointwise:
        raise bad("grpo.rewards", "the label reward needs several passages per prompt (not a pointwise target)")
    if g.on_collapse not in ("stop", "warn"):
        raise bad("grpo.on_collapse", f"use stop or warn, got {g.on_collapse!r}")
    if not 0 < g.collapse_share <= 1 or g.collapse_window < 1:
        raise bad("grpo.collapse_share", "needs 0 < collapse_share <= 1 and collapse_window >= 1")


def parse_config(values: Any, path: str | Path = "<config>") -> TrainConfig:
    """A validated TrainConfig from a mapping (as read from YAML); InputError names the file and field."""
    path = Path(path)
    config = _build(TrainConfig, values, "", path)
    _check(config, path)
    return config


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config YAML file."""
    path = Path(path)
    return parse_config(read_yaml(path, "config file"), path)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the config (every field, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
