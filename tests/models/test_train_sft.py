"""Causal-LM SFT and contrastive training (rankwise.train.sft, rankwise.train.targets): the training prompt
is the method's inference prompt, labels map to answer tokens, the losses, and a few real steps on a tiny
random model whose output directory then loads and reranks through the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankwise.errors import InputError
from rankwise.train.budget import BUDGET_FILE
from rankwise.train.config import parse_config
from rankwise.train.groups import Group
from rankwise.train.sft import collate, contrastive_loss, first_ranking_loss, sft_loss, train_sft
from rankwise.train.targets import choice_index, target_method, target_rows
from rankwise.types import Candidate, Query
from tests.tiny_lm import tiny_backend, tiny_training_setup

WORDS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    return tiny_training_setup(tmp_path, monkeypatch)


def _group() -> Group:
    return Group("q1", "capital of france", ("p", "n1", "n2"), ("Paris is the capital", "bread", "bitcoin"),
                 (3.0, 1.0, 0.0), 1)


def test_labels_map_to_choices():
    assert [choice_index("yes_no", g, 2, 3, 2) for g in (3, 2, 1, 0)] == [0, 0, 1, 1]
    assert [choice_index("graded", g, 2, 3, 4) for g in (3, 2, 1, 0)] == [3, 2, 1, 0]
    assert choice_index("graded", 1, 1, 1, 4) == 3  # binary qrels (SciFact): relevant is the top grade


@pytest.mark.parametrize("target", ["pointwise.yes_no", "pointwise.graded"])
def test_training_prompts_are_the_methods_inference_prompts(target):
    backend = tiny_backend()
    method = target_method(target, backend, {"max_passage_tokens": 4})
    (row,) = target_rows(method, [_group()], threshold=2)
    group = _group()
    expected = method.prompts(Query(group.qid, group.query), [Candidate(d, t) for d, t in
                                                               zip(group.docids, group.texts)])
    assert [list(ids) for ids in row.input_ids] == [backend._tokenize(p) for p in expected]
    answer = [backend.tokenizer.decode(list(a)) for a in row.answers]
    assert answer == (["Yes", "No", "No"] if target == "pointwise.yes_no" else ["3", "1", "0"])


def _listwise_group() -> Group:
    return Group("q1", "capital of france", ("p", "n1", "n2", "n3"),
                 ("Paris is the capital", "bread", "bitcoin", "plants"), (3.0, 1.0, 0.0, 0.0), 1)


@pytest.mark.parametrize("target", ["listwise.window", "listwise.first"])
def test_listwise_rows_are_the_window_prompt_and_the_permutation_by_grade(target):
    """RankZephyr: the permutation ordered by grade (ties in the order shown: the two grade-0 passages keep
    their window order, as the first stage's order at inference), then the end of the turn; FIRST: also the
    identifier tokens in that order."""
    backend = tiny_backend()
    method = target_method(target, backend, {"window_size": 4, "step": 2})
    group = _listwise_group()
    rows = target_rows(method, [group] * 6, threshold=2, seed=3)
    seen_first = set()
    for row in rows:
        (prompt,), (answer,) = row.input_ids, row.answers
        text = backend.tokenizer.decode(list(prompt))
        shown = sorted(range(4), key=lambda i: text.index(group.texts[i]))  # the seeded window order
        expected = method.prompt(group.query, [group.texts[i] for i in shown], [0.0] * 4)
        assert list(prompt) == backend._tokenize(expected)
        labels = ["1", "2", "3", "4"] if target == "listwise.window" else ["A", "B", "C", "D"]
        by_grade = sorted(range(4), key=lambda j: (-group.labels[shown[j]], j))
        permutation = " > ".join(f"[{labels[j]}]" for j in by_grade)
        assert method.answer_prefix + backend.tokenizer.decode(list(answer[:-1])) == permutation
        assert answer[-1] == backend.tokenizer.eos_token_id
        if target == "listwise.first":
            ids = [backend._tokenize(c)[0] for c in method.choices[:4]]
            assert list(row.ranking) == [ids[j] for j in by_grade]
        seen_first.add(shown.index(0))
    assert len(seen_first) > 1  # the positive is not always shown first


def test_setwise_rows_answer_the_label_of_the_best_passage():
    backend = tiny_backend()
    method = target_method("setwise.heapsort", backend, {})
    group = _listwise_group()
    for row in target_rows(method, [group] * 4, threshold=2, seed=1):
        text = backend.tokenizer.decode(list(row.input_ids[0]))
        assert text.endswith("Passage")
        position = sorted(range(4), key=lambda i: text.index(group.texts[i])).index(0)
        assert backend.tokenizer.decode(list(row.answers[0])).strip() == "ABCD"[position]


def test_groupwise_rows_answer_the_grades_of_the_group_in_the_order_shown():
    """GroupRank's cold start: the JSON list of the shown passages' grades (0..3), after the "[" the method
    writes at the end of its prompt, then the end of the turn; binary labels become 0 or the top grade."""
    backend = tiny_backend()
    options = {"prompt": "groupwise.json", "group_size": 4, "answer_prefix": "["}
    method = target_method("groupwise.generate", backend, options)
    group = _listwise_group()
    answers = set()
    for row in target_rows(method, [group] * 6, threshold=2, seed=2):
        (prompt,), (answer,) = row.input_ids, row.answers
        text = backend.tokenizer.decode(list(prompt))
        shown = sorted(range(4), key=lambda i: text.index(group.texts[i]))
        assert list(prompt) == backend._tokenize(method.prompt(group.query, [group.texts[i] for i in shown]))
        written = "[" + backend.tokenizer.decode(list(answer[:-1]))
        assert written == "[" + ", ".join(str(int(group.labels[i])) for i in shown) + "]"
        assert answer[-1] == backend.tokenizer.eos_token_id
        assert method.read_answer(written[1:], 4) == {j: group.labels[i] for j, i in enumerate(shown)}
        answers.add(written)
    assert len(answers) > 1  # the seeded orders differ, and so do the answers
    binary = Group("q1", "capital", ("p", "n"), ("Paris", "bread"), (1.0, 0.0), 1)
    (row,) = target_rows(method, [binary], threshold=1, seed=0)
    assert sorted(backend.tokenizer.decode(list(row.answers[0][:-1])).rstrip("]").split(", ")) == ["0", "3"]


def test_groupwise_rows_answer_score_lines_on_the_prompts_scale():
    """With groupwise.score the answer is one "Document [i] score: X" line per passage shown, on 0..10 (grade 3
    is 10, 1 is 3), which the method reads back as it does when reranking."""
    backend = tiny_backend()
    method = target_method("groupwise.generate", backend, {"group_size": 4})
    group = _listwise_group()
    for row in target_rows(method, [group] * 3, threshold=2, seed=4):
        (prompt,), (answer,) = row.input_ids, row.answers
        text = backend.tokenizer.decode(list(prompt))
        shown = sorted(range(4), key=lambda i: text.index(group.texts[i]))
        written = backend.tokenizer.decode(list(answer[:-1]))
        expected = [round(group.labels[i] / 3 * 10) for i in shown]
        assert written == "\n".join(f"Document [{j + 1}] score: {s}" for j, s in enumerate(expected))
        assert method.read_answer(written, 4) == dict(enumerate(map(float, expected)))


def test_groupwise_rows_with_a_teacher_answer_its_scores_on_one_scale_per_query():
    """GroupRank's cold start from a teacher: the teacher's scores, min-max over all the query's training
    candidates (not per group), on the prompt's 0..10; a query the teacher scored alike gets zeros."""
    backend = tiny_backend()
    method = target_method("groupwise.generate", backend, {"group_size": 3})
    first = Group("q1", "capital of france", ("p", "n1", "n2"), ("Paris is the capital", "bread", "bitcoin"),
                  (0.0, 0.0, 0.0), 1)
    second = Group("q1", "capital of france", ("p", "n3", "n4"), ("Paris is the capital", "plants", "yeast"),
                   (0.0, 0.0, 0.0), 1)
    flat = Group("q2", "bread", ("a", "b", "c"), ("bread", "yeast", "plants"), (3.0, 0.0, 0.0), 1)
    teacher = [(0.9, 0.1, 0.5), (0.9, 0.34, 0.66), (0.2, 0.2, 0.2)]
    expected = [[10, 0, 5], [10, 3, 7], [0, 0, 0]]
    for row, group, scores in zip(target_rows(method, [first, second, flat], threshold=2, seed=1,
                                              teacher=teacher), (first, second, flat), expected):
        text = backend.tokenizer.decode(list(row.input_ids[0]))
        shown = sorted(range(3), key=lambda i: text.index(group.texts[i]))
        written = backend.tokenizer.decode(list(row.answers[0][:-1]))
        assert method.read_answer(written, 3) == {j: float(scores[i]) for j, i in enumerate(shown)}


def test_a_recipes_sft_stage_takes_its_own_teacher(tmp_path):
    """The teacher belongs to the sft stage of a recipe (GRPO has none): the stage gets it, the RL stage not."""
    from rankwise.train.stages import stage_configs

    config = parse_config({"kind": "grpo", "grpo": {"target": "groupwise.generate"},
                           "stages": [{"name": "sft", "kind": "sft", "sft": {"target": "groupwise.generate"},
                                       "teacher": {"method": "embedding.cosine", "model": "minilm-l6"}},
                                      {"name": "rl"}]})
    (_, sft, _), (_, rl, _) = stage_configs(config, tmp_path)
    assert (sft.teacher.method, sft.teacher.model, rl.teacher) == ("embedding.cosine", "minilm-l6", None)


def test_methods_sft_cannot_train_are_named():
    with pytest.raises(InputError, match="sft.target"):
        parse_config({"kind": "sft", "sft": {"target": "pointwise.qlm"}})
    with pytest.raises(InputError, match="reasoning"):
        target_method("listwise.window", tiny_backend(), {"reasoning_tokens": 16, "prompt": "listwise.reasonrank"})
    with pytest.raises(InputError, match="log-odds"):
        parse_config({"kind": "contrastive", "sft": {"target": "pointwise.graded"}})


def test_losses():
    batch = {"targets": torch.tensor([1, 0]), "group_size": 2, "first": torch.tensor([0, 1])}
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    assert sft_loss(logits, batch) < 0.02
    # yes = token 0, no = token 1: the first passage (the positive) must out-score the second
    good = contrastive_loss(torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]]), batch, [0], [1], 1.0)
    bad = contrastive_loss(torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]]), batch, [0], [1], 1.0)
    assert good < 0.01 and bad > 9


def test_first_ranking_loss_by_hand():
    """Identifiers 5, 6, 7 ranked in that order: pairs (1,2) weight 1/3, (1,3) 1/4, (2,3) 1/5."""
    logits = torch.zeros(1, 8)
    logits[0, 5], logits[0, 6], logits[0, 7] = 2.0, 1.0, 0.0
    batch = {"first": torch.tensor([0]), "ranking": torch.tensor([[5, 6, 7, -1]])}
    sp = torch.nn.functional.softplus
    expected = (sp(torch.tensor(-1.0)) / 3 + sp(torch.tensor(-2.0)) / 4 + sp(torch.tensor(-1.0)) / 5) / (1 / 3 + 1 / 4 + 1 / 5)
    assert first_ranking_loss(logits, batch) == pytest.approx(expected.item())
    logits[0, 5], logits[0, 7] = 0.0, 2.0  # the order reversed: a larger loss
    assert first_ranking_loss(logits, batch) > expected


def test_collate_pads_right_and_marks_answer_positions():
    from rankwise.train.targets import TargetRow

    batch = collate([TargetRow(((1, 2, 3), (4,)), ((7,), (8,)))], pad_id=0)  # pointwise: one token each
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["last"].tolist() == [2, 0] and batch["group_size"] == 2
    assert batch["positions"].tolist() == [[0, 2], [1, 0]] and batch["targets"].tolist() == [7, 8]
    batch = collate([TargetRow(((1, 2),), ((5, 6, 9),), (5, 6))], pad_id=0)  # a permutation of 3 tokens
    assert batch["input_ids"].tolist() == [[1, 2, 5, 6]]  # teacher forcing: the last answer token not fed
    assert batch["positions"].tolist() == [[0, 1], [0, 2], [0, 3]] and batch["targets"].tolist() == [5, 6, 9]
    assert batch["first"].tolist() == [0] and batch["ranking"].tolist() == [[5, 6]]


@pytest.mark.parametrize("kind,target,options", [
    ("sft", "pointwise.yes_no", {}), ("sft", "pointwise.graded", {}), ("contrastive", "pointwise.yes_no", {}),
    ("sft", "listwise.window", {"window_size": 3, "step": 1, "max_passage_tokens": 8}),
    ("sft", "listwise.first", {"window_size": 3, "step": 1, "max_passage_tokens": 8}),
    ("sft", "setwise.heapsort", {"set_size": 3, "max_passage_tokens": 8}),
    ("sft", "groupwise.generate", {"prompt": "groupwise.json", "group_size": 3, "max_passage_tokens": 8,
                                   "answer_prefix": "["}),
    ("sft", "groupwise.generate", {"group_size": 3, "max_passage_tokens": 8})])
def test_a_few_steps_on_a_tiny_model_write_a_model_that_reranks(tiny_setup, tmp_path, kind, target, options):
    from rankwise.pipeline import load_reranker

    model, data = tiny_setup
    config = parse_config({
        "kind": kind, "model": str(model), "sft": {"target": target, "lora_r": 4, "options": options},
        "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1, "dev_fraction": 0.0,
                 "min_grade": 1, "seed": 1},
        "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-3, "logging_steps": 1,
                     "save_steps": 2, "dtype": "float32"}})
    out = tmp_path / "sft"
    results = train_sft(config, out)
    assert results["steps"] == 3 and results["train_groups"] == 12 and results["sources"]["queries"]
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "checkpoints").is_dir()
    assert len(json.loads((out / "loss.json").read_text())) == 3
    assert set(json.loads((out / "train-queries.json").read_text())) == {f"t{t}q{q}" for t in range(4)
                                                                         for q in range(3)}
    greedy = results["greedy_answers"]  # the greedy probe, for methods that generate their answer
    if target in ("groupwise.generate", "listwise.window"):
        assert greedy["prompts"] == 12 and 1 <= greedy["distinct"] <= 12 and 0 < greedy["most_common_share"] <= 1
    else:
        assert greedy is None
    reranker = load_reranker(target, str(out), cache=False, **options)
    docs = [Candidate("a", "bread yeast rises"), Candidate("b", "x"), Candidate("c", "plants")]
    ranking = reranker.rank(Query("q", "bread yeast"), docs)
    assert {c.docid for c in ranking.candidates} == {"a", "b", "c"}


def test_bf16_training_merges_the_adapter_into_fp32_weights(tiny_setup, tmp_path):
    from transformers import AutoModelForCausalLM

    model, data = tiny_setup
    config = parse_config({"kind": "sft", "model": str(model), "sft": {"lora_r": 4},
                           "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1,
                                    "dev_fraction": 0.0, "seed": 1},
                           "training": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-2,
                                        "warmup_ratio": 0.0, "dtype": "bfloat16",
                                        "gradient_checkpointing": True}})
    results = train_sft(config, tmp_path / "sft")
    assert results["bf16"] is True
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    base = AutoModelForCausalLM.from_pretrained(model)
    assert next(merged.parameters()).dtype == torch.float32
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)


def test_resume_continues_from_the_last_checkpoint(tiny_setup, tmp_path):
    model, data = tiny_setup
    values = {"kind": "sft", "model": str(model), "sft": {"lora_r": 4},
              "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1,
                       "dev_fraction": 0.0, "seed": 1},
              "training": {"max_steps": 2, "batch_size": 2, "logging_steps": 1, "save_steps": 2,
                           "dtype": "float32", "max_minutes": 30}}
    out = tmp_path / "sft"
    train_sft(parse_config(values), out)
    first = json.loads((out / "checkpoints" / "checkpoint-2" / BUDGET_FILE).read_text())
    assert first["minutes"] == 30 and first["spent_seconds"] > 0
    values["training"]["max_steps"] = 3
    results = train_sft(parse_config(values), out, resume=True)
    assert results["resumed_from"].endswith("checkpoint-2") and results["steps"] == 3
    later = json.loads((out / "checkpoints" / "checkpoint-3" / BUDGET_FILE).read_text())
    assert later["spent_seconds"] > first["spent_seconds"]  # the budget went on, it did not start again
    assert [r["step"] for r in json.loads((out / "loss.json").read_text())] == [1, 2, 3]


def test_held_out_datasets_are_never_trained_on(tiny_setup, tmp_path):
    from rankwise.train.groups import training_split

    _, data = tiny_setup
    config = parse_config({"kind": "sft", "data": {"dataset": str(data), "depth": 20, "group_size": 3,
                                                   "dev_fraction": 0.0, "held_out": [str(data)]}})
    with pytest.raises(InputError, match="no training groups"):
        training_split(config.data, 3)  # every query is also an evaluation query


@pytest.mark.slow
def test_sft_on_smollm2_for_two_steps(tmp_path):
    """The shipped example config, two steps on SmolLM2-135M (a minute on 2 shared cores)."""
    from rankwise.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "train-sft-pointwise-dl20.yaml")
    config.model = "smollm2-135m"
    config.training.max_steps, config.training.batch_size, config.training.max_minutes = 2, 1, None
    config.data.max_queries = 2
    results = train_sft(config, tmp_path / "sft")
    assert results["steps"] == 2 and (tmp_path / "sft" / "loss.png").is_file()


def test_distillation_scores_the_candidates_once_and_trains_on_the_teachers_distribution(tiny_setup, tmp_path):
    """A pointwise.yes_no teacher (the tiny model itself) scores every training candidate once into
    teacher.trec (log-odds); the student trains on its distribution; a resumed run reuses the file."""
    from rankwise.data import read_run
    from rankwise.pipeline import load_reranker
    from rankwise.train.teacher import log_odds

    model, data = tiny_setup
    values = {"kind": "sft", "model": str(model), "sft": {"lora_r": 4},
              "teacher": {"method": "pointwise.yes_no", "model": str(model), "scale": 2.0},
              "data": {"dataset": str(data), "depth": 20, "group_size": 3, "groups_per_query": 1,
                       "dev_fraction": 0.0, "seed": 1},
              "training": {"max_steps": 2, "batch_size": 2, "logging_steps": 1, "save_steps": 2,
                           "dtype": "float32"}}
    out = tmp_path / "distil"
    results = train_sft(parse_config(values), out)
    assert results["teacher"] == f"pointwise.yes_no on {model}" and results["steps"] == 2
    teacher = read_run(out / "teacher.trec")
    assert len(teacher) == 12 and all(len(docs) >= 3 for docs in teacher.values())
    direct = load_reranker("pointwise.yes_no", str(model), cache=False)
    query = next(iter(teacher))
    docs = list(teacher[query])
    scored = direct.rank(Query(query, _query_text(data, query)), [Candidate(d, _doc_text(data, d)) for d in docs])
    for d, s in zip(scored.docids, scored.scores):
        assert teacher[query][d] == pytest.approx(log_odds(s), abs=1e-3)
    values["training"]["max_steps"] = 3
    stamp = (out / "teacher.trec").stat().st_mtime_ns
    train_sft(parse_config(values), out, resume=True)
    assert (out / "teacher.trec").stat().st_mtime_ns == stamp  # not computed again


def _query_text(data: Path, qid: str) -> str:
    return next(json.loads(line)["text"] for line in (data / "queries.jsonl").read_text().splitlines()
                if json.loads(line)["_id"] == qid)


def _doc_text(data: Path, docid: str) -> str:
    return next(json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()
                if json.loads(line)["_id"] == docid)


def test_a_teacher_makes_unjudged_queries_training_data(tiny_setup, tmp_path):
    """data.unjudged: queries without qrels (a topics file, no qrels file) train a listwise student on the
    teacher's order; without a teacher the config is refused, naming the field."""
    from rankwise.data import read_run
    from rankwise.pipeline import load_reranker

    model, data = tiny_setup
    topics = tmp_path / "topics.tsv"
    topics.write_text("u1\tparis passage\nu2\tbread passage\n")
    values = {"kind": "sft", "model": str(model), "sft": {"target": "listwise.window", "lora_r": 4,
                                                          "options": {"window_size": 4, "step": 2}},
              "teacher": {"method": "pointwise.yes_no", "model": str(model)},
              "data": {"dataset": str(data), "queries": str(topics), "unjudged": True, "depth": 20,
                       "group_size": 4, "groups_per_query": 2, "dev_fraction": 0.0},
              "training": {"max_steps": 1, "batch_size": 1, "logging_steps": 1, "save_steps": 1,
                           "dtype": "float32"}}
    out = tmp_path / "unjudged"
    results = train_sft(parse_config(values), out)
    assert results["unjudged_queries"] == 2 and results["train_groups"] == 4
    assert "teacher" in results["sources"]["labels"]
    assert set(read_run(out / "teacher.trec")) == {"u1", "u2"}
    reranker = load_reranker("listwise.window", str(out), cache=False, window_size=4, step=2)
    passages = [Candidate(f"d{i}", text) for i, text in enumerate(WORDS)]
    assert sorted(reranker.rank(Query("u1", "paris passage"), passages).docids) == ["d0", "d1", "d2", "d3"]
    del values["teacher"]
    with pytest.raises(InputError, match="data.unjudged"):
        parse_config(values)


def test_a_teacher_orders_listwise_answers():
    backend = tiny_backend()
    method = target_method("listwise.window", backend, {"window_size": 4, "step": 2})
    group = _listwise_group()
    teacher = [(0.0, 1.0, 3.0, 2.0)]  # the teacher prefers n2, n3, n1, then the qrels' positive
    (row,) = target_rows(method, [group], threshold=2, seed=3, teacher=teacher)
    text = backend.tokenizer.decode(list(row.input_ids[0]))
    shown = sorted(range(4), key=lambda i: text.index(group.texts[i]))
    expected = " > ".join(f"[{shown.index(i) + 1}]" for i in (2, 3, 1, 0))
    assert method.answer_prefix + backend.tokenizer.decode(list(row.answers[0][:-1])) == expected


def test_distill_loss_is_zero_when_the_student_matches_the_teacher():
    from rankwise.train.sft import distill_loss

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # yes = token 0, no = token 1
    batch = {"first": torch.tensor([0, 1]), "group_size": 2, "soft": torch.tensor([[2.0, 0.0]])}
    assert distill_loss(logits, batch, [0], [1], 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(logits, batch, [0], [1], 1.0, -1.0).item() > 0.5  # a teacher of the opposite order
