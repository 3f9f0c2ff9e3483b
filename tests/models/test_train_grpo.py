"""GRPO glue (rankwise.train.grpo): the training prompts ARE the method's prompts (rendered by the target
method itself, equal character for character to the ones the trained directory reranks with), the TRL
dataset, real GRPOTrainer steps of every recipe on a tiny random model whose output loads and reranks
through the method, and the collapse check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankwise.pipeline import run
from rankwise.train.config import GrpoConfig, parse_config
from rankwise.train.groups import Group
from rankwise.train.grpo import (CollapseCheck, grpo_dataset, load_trained, method_options, moving_average,
                                 train_grpo, training_method, training_target, training_text)
from rankwise.train.stages import train as train_stages
from rankwise.types import Candidate, Query, Request
from tests.tiny_lm import save_tiny_model, tiny_model, tiny_tokenizer, tiny_training_setup

WORDS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]
GRADES = {"POS": 3.0, "NEG1": 0.0, "NEG2": 1.0, "NEG3": 0.0}


def _groups(n: int = 8) -> list[Group]:
    return [Group(f"q{i}", f"query {i}", ("p", "n1", "n2", "n3"), ("POS", "NEG1", "NEG2", "NEG3"),
                  (3.0, 0.0, 1.0, 0.0), 1) for i in range(n)]


GROUPWISE = {"prompt": "groupwise.json", "answer_prefix": "["}


def _rows(config: GrpoConfig, seed: int = 1, groups: list[Group] | None = None):
    tok = tiny_tokenizer()
    target = training_target(training_method(tiny_model(len(tok)), tok, "tiny", config), config)
    return grpo_dataset(groups or _groups(), target, tok, seed), tok


def test_grpo_rows_shuffle_passages_with_their_labels():
    rows, _ = _rows(GrpoConfig(group_size=4, options=GROUPWISE))
    firsts = set()
    for row in rows:
        text = row["prompt"]
        assert text.endswith("<|im_start|>assistant\n[") and row["answer_prefix"] == "["  # the turn is left open
        order = sorted(GRADES, key=text.index)
        assert row["labels"] == [GRADES[name] for name in order]
        firsts.add(order[0])
    assert len(firsts) > 1  # the positive is not always first


def test_training_prompts_equal_the_prompts_of_the_trained_directory(tmp_path):
    """Character for character (passages cut by the method alike), and token for token as TRL and the
    engine tokenize them."""
    config = GrpoConfig(group_size=4, options={**GROUPWISE, "max_passage_tokens": 3})
    texts = tuple(f"{i} {w} and more words" for i, w in enumerate(WORDS))
    groups = [Group(f"q{i}", f"query {i}", ("a", "b", "c", "d"), texts, (3.0, 0.0, 1.0, 0.0), 1) for i in range(6)]
    rows, tok = _rows(config, seed=2, groups=groups)
    save_tiny_model(tmp_path / "tiny")
    reranker = load_trained(tmp_path / "tiny", config)  # what evaluation and `rankwise rerank` load
    cut = {t: reranker.backend.truncate(t, 3) for t in texts}
    assert all(cut[t] != t and cut[t] in rows[0]["prompt"] and t not in rows[0]["prompt"] for t in texts)
    for row in rows:
        group = groups[[g.query in row["prompt"] for g in groups].index(True)]
        shown = sorted(group.texts, key=lambda t: row["prompt"].index(cut[t]))
        assert row["prompt"] == reranker.prompt(group.query, shown)
        assert tok(row["prompt"])["input_ids"] == reranker.backend.tokenizer(
            reranker.prompt(group.query, shown), add_special_tokens=False)["input_ids"]


class _BosTokenizer:
    """A tokenizer that adds its BOS token itself (as Llama's do)."""

    bos_token, bos_token_id = "<s>", 1

    def __call__(self, text: str) -> dict:
        return {"input_ids": [1] + [ord(c) for c in text]}


def test_a_bos_the_tokenizer_adds_again_is_dropped_from_the_training_text():
    assert training_text("<s>user: q", _BosTokenizer()) == "user: q"
    assert training_text("user: q", _BosTokenizer()) == "user: q"
    assert training_text("<s>user: q", tiny_tokenizer()) == "<s>user: q"  # adds no BOS: kept as it is


def test_the_method_options_are_the_configs():
    g = GrpoConfig(options={"prompt": "groupwise.json", "max_passage_tokens": 20, "answer_prefix": "["},
                   group_size=3)
    assert method_options(g) == {"prompt": "groupwise.json", "group_size": 3, "max_passage_tokens": 20,
                                 "answer_prefix": "["}
    assert method_options(GrpoConfig(target="setwise.reasoning", group_size=4)) == {"set_size": 4}
    assert method_options(GrpoConfig(target="listwise.window", group_size=5, options={"step": 2})) == \
        {"step": 2, "window_size": 5}
    assert method_options(GrpoConfig(target="pointwise.graded", group_size=5)) == {}


def test_moving_average():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    return tiny_training_setup(tmp_path, monkeypatch)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_grpo_step_on_a_tiny_model_writes_adapter_merged_model_and_rewards(tiny_setup, tmp_path, dtype):
    """bfloat16 trains on bf16 base weights and merges the adapter into fp32 ones."""
    from transformers import AutoModelForCausalLM

    model, data = tiny_setup
    config = parse_config({
        "kind": "grpo", "model": str(model),
        "data": {"dataset": str(data), "depth": 20, "groups_per_query": 1, "dev_fraction": 0.0, "seed": 1},
        "grpo": {"group_size": 3, "num_generations": 2, "max_completion_length": 4,
                 "options": {"prompt": "groupwise.json", "answer_prefix": "[", "max_passage_tokens": 8}},
        "training": {"max_steps": 1, "batch_size": 1, "dtype": dtype, "save_steps": 10}})
    out = tmp_path / "grpo"
    results = train_grpo(config, out)
    assert results["steps"] == 1 and (out / "adapter" / "adapter_config.json").is_file()
    assert results["bf16"] is (dtype == "bfloat16")
    merged = AutoModelForCausalLM.from_pretrained(out)  # the merged model: a plain transformers directory
    assert next(merged.parameters()).dtype == torch.float32
    rows = json.loads((out / "rewards.json").read_text())
    assert len(rows) == 1 and {"reward", "reward_std", "rewards/format_reward/mean"} <= set(rows[0])
    assert -1.0 <= rows[0]["rewards/format_reward/mean"] <= 1.0
    assert results["method"] == "groupwise.generate" and results["method_options"] == method_options(config.grpo)


@pytest.mark.parametrize("options", [{"prompt": "groupwise.json", "answer_prefix": "["},
                                     {"prompt": "groupwise.score"}], ids=["json-list", "score-lines"])
def test_the_trained_directory_reranks_through_the_method(tiny_setup, tmp_path, options):
    """Two GRPO steps, then the output loads as groupwise.generate and reranks through pipeline.run; with
    either answer form (a JSON list, or GroupRank's "Document [i] score: X" lines)."""
    model, data = tiny_setup
    config = parse_config({
        "kind": "grpo", "model": str(model),
        "data": {"dataset": str(data), "depth": 20, "groups_per_query": 1, "dev_fraction": 0.0, "seed": 1},
        "grpo": {"group_size": 3, "num_generations": 2, "max_completion_length": 4,
                 "options": {**options, "max_passage_tokens": 8}},
        "training": {"max_steps": 2, "batch_size": 1, "dtype": "float32", "save_steps": 10}})
    out = tmp_path / "grpo"
    assert train_grpo(config, out)["steps"] == 2
    requests = [Request(Query(f"q{n}", WORDS[n]), [Candidate(f"d{i}", f"{w} passage", 0.0)
                                                   for i, w in enumerate(WORDS + WORDS[:3])]) for n in range(2)]
    result = run(load_trained(out, config.grpo, dtype="float32") % 5, requests)
    for r in requests:
        ranking = result.rankings[r.query.qid]
        assert sorted(ranking.docids) == sorted(c.docid for c in r.candidates)
        assert ranking.docids[5:] == [c.docid for c in r.candidates[5:]]  # the tail keeps its order
    # 2 groups (3 + 2) per query, 4 answers generated; a random model's unparsable answers fall back to logits
    assert result.usage.completion_tokens > 0 and 0 <= result.usage.parse_failures <= 4
    assert result.usage.calls >= 4


@pytest.mark.slow
def test_grpo_trains_a_lora_adapter_on_smollm2_for_one_step(tmp_path):
    """One GRPO step of the shipped example on SmolLM2-135M (a minute or two on 2 shared cores)."""
    from rankwise.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "train-grpo-groupwise.yaml")
    config.training.max_steps, config.training.batch_size = 1, 1
    config.grpo.num_generations, config.grpo.max_completion_length = 2, 8
    config.data.max_queries = 2
    results = train_grpo(config, tmp_path / "grpo")
    assert results["steps"] == 1 and (tmp_path / "grpo" / "adapter" / "adapter_config.json").is_file()
    assert len(json.loads((tmp_path / "grpo" / "rewards.json").read_text())) == 1
    request = Request(Query("q", "why does bread rise"), [Candidate(f"d{i}", t) for i, t in enumerate(
        ["yeast makes gas that lifts the dough", "plants make food from light", "bitcoin mining uses energy",
         "the capital of France is Paris", "sourdough rises because of wild yeast"])])
    ranking = run(load_trained(tmp_path / "grpo", config.grpo), [request]).rankings["q"]
    assert sorted(ranking.docids) == [f"d{i}" for i in range(5)] and ranking.usage.calls == 1


RECIPES = ["train-grpo-groupwise.yaml", "train-grouprank.yaml", "train-prorank.yaml", "train-erank.yaml",
           "train-rank-r1.yaml", "train-reasonrank.yaml"]


def _tiny_recipe(name: str, model: Path, data: Path) -> dict:
    """The shipped recipe, every stage cut to one or two steps on the tiny model and data (4 passages a list)."""
    import yaml

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / name).read_text())
    values["model"] = str(model)
    values["data"] = {**values["data"], "dataset": str(data), "depth": 20, "groups_per_query": 1,
                      "held_out": [], "group_size": 4}
    values["grpo"] = {**values["grpo"], "num_generations": 2,
                      "max_completion_length": min(values["grpo"].get("max_completion_length", 64), 12)}
    if "reasoning_tokens" in values["grpo"].get("options", {}):
        values["grpo"]["options"] = {**values["grpo"]["options"], "reasoning_tokens": 8}
    if values["grpo"]["target"].startswith(("groupwise", "setwise", "listwise")):
        values["grpo"]["group_size"] = 3
    batch = 4 if values["grpo"]["target"].startswith("pointwise") else 1
    values["training"] = {**values["training"], "max_steps": 2, "batch_size": batch, "dtype": "float32",
                          "max_minutes": None}
    for stage in values.get("stages", []):
        stage["training"] = {**stage.get("training", {}), "max_minutes": None, "max_steps": 1}
        if stage.get("kind") == "sft":
            stage["training"]["batch_size"] = 1
    return values


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_on_a_tiny_model_and_its_output_reranks_through_its_method(recipe, tiny_setup,
                                                                                         tmp_path):
    """A few GRPO steps of each shipped recipe (every stage); rewards.json logs each reward component, the
    spread and the answers' variety; the output reranks through the recipe's method with its options."""
    model, data = tiny_setup
    config = parse_config(_tiny_recipe(recipe, model, data), recipe)
    out = tmp_path / "out"
    results = train_stages(config, out)
    assert results["steps"] >= 1 and results["method"] == config.grpo.target
    rows = json.loads((out / "rewards.json").read_text())
    components = {f"rewards/{n}_reward/mean" for n in config.grpo.rewards}
    if config.stages:  # the last stage's rewards; every stage left its output
        last = {**config.to_dict()["grpo"], **config.stages[-1].get("grpo", {})}
        components = {f"rewards/{n}_reward/mean" for n in last["rewards"]}
        assert [s["name"] for s in results["stages"]] == [s["name"] for s in config.stages]
        assert all((Path(s["output"]) / "config.json").is_file() for s in results["stages"])
    assert components <= set(rows[0]) and {"reward_std", "frac_reward_zero_std", "answers/distinct"} <= set(rows[0])
    assert ("kl" in rows[0]) == (config.grpo.beta > 0)
    greedy = results["greedy_answers"]
    assert 1 <= greedy["distinct"] <= greedy["prompts"] and 0 < greedy["most_common_share"] <= 1
    requests = [Request(Query(f"q{n}", WORDS[n]), [Candidate(f"d{i}", f"{w} passage", 0.0)
                                                   for i, w in enumerate(WORDS + WORDS[:2])]) for n in range(2)]
    result = run(load_trained(out, config.grpo, dtype="float32") % 6, requests)
    assert all(sorted(result.rankings[r.query.qid].docids) == sorted(c.docid for c in r.candidates)
               for r in requests)


def test_the_collapse_check_fires_on_a_constant_policy_and_not_on_a_varied_one():
    constant, varied = CollapseCheck(window=3, share=0.95), CollapseCheck(window=3, share=0.95)
    for step in range(3):
        assert constant.add(["[1, 2, 3]"] * 8) == {"answers/distinct": 1 / 8, "answers/top_share": 1.0}
        varied.add([f"[{step}, {i % 3}]" for i in range(8)])
        assert (constant.collapsed() is None) == (step < 2)  # only once the window is full
    assert constant.collapsed() == ("[1, 2, 3]", 1.0)
    assert varied.collapsed() is None


def test_a_collapsing_policy_stops_the_run(tiny_setup, tmp_path):
    """A tiny model that answers one thing: the check stops training after its window and says when."""
    model, data = tiny_setup
    values = _tiny_recipe("train-prorank.yaml", model, data)
    values.pop("stages")
    values["grpo"] |= {"rewards": {"format": 1.0}, "collapse_window": 1, "collapse_share": 0.0001,
                       "on_collapse": "stop"}
    values["training"]["max_steps"] = 5
    results = train_grpo(parse_config(values), tmp_path / "out")
    assert results["collapsed_at"] == 1 and results["steps"] == 1


def test_the_cli_trains_every_stage_with_its_overrides_and_resume_skips_finished_stages(tiny_setup, tmp_path):
    """`rankwise train RECIPE --max-steps 1`: the command-line limit wins in every stage (whose own
    training section sets more); --resume trains only what is not finished."""
    import yaml
    from typer.testing import CliRunner

    from rankwise.cli.app import app

    model, data = tiny_setup
    values = _tiny_recipe("train-prorank.yaml", model, data)
    for stage in values["stages"]:
        stage["training"]["max_steps"] = 3
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(values))
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["train", str(recipe), "--output", str(out), "--max-steps", "1"])
    assert done.exit_code == 0, done.output
    results = json.loads((out / "train-results.json").read_text())
    assert [(s["name"], s["steps"]) for s in results["stages"]] == [("warmup", 1), ("fine", 1)]
    warmup = out / "stages" / "1-warmup" / "train-results.json"
    stamp = warmup.stat().st_mtime_ns
    done = CliRunner().invoke(app, ["train", str(recipe), "--output", str(out), "--resume", "--max-steps", "2"])
    assert done.exit_code == 0, done.output
    assert warmup.stat().st_mtime_ns == stamp  # the finished warm-up is not trained again
    assert json.loads((out / "train-results.json").read_text())["steps"] == 2  # the last stage continued
