"""GRPO rewards (pure functions, TRL's signature) against hand-computed values, reading answers with the
trained method's own parser through its target (rankwise.train.grpo_targets), malformed answers included."""

from __future__ import annotations

import math

import pytest

from rankwise.methods import build_method
from rankwise.train.grpo_targets import (BROKEN, OK, PARTIAL, Answer, GroupwiseTarget, ListwiseTarget,
                                         PointwiseTarget, SetwiseTarget, target_for)
from rankwise.train.rewards import (AnswerLog, component_value, make_reward, ndcg_at_k, pooled_values, rbo,
                                    recall_at_k, reward_functions)
from tests.listwise_oracle import ListwiseOracle

ORACLE = ListwiseOracle({})
GROUPWISE = GroupwiseTarget(build_method("groupwise.generate", ORACLE, prompt="groupwise.json", answer_prefix="["), 3)
LINES = GroupwiseTarget(build_method("groupwise.generate", ORACLE), 3)  # groupwise.score: 0..10 lines
GRADED = PointwiseTarget(build_method("pointwise.graded", ORACLE))
YES_NO = PointwiseTarget(build_method("pointwise.yes_no", ORACLE))
RANK_R1 = SetwiseTarget(build_method("setwise.reasoning", ORACLE, prompt="setwise.rank_r1", set_size=3), 3)
REASONRANK = ListwiseTarget(build_method("listwise.window", ORACLE, prompt="listwise.reasonrank", window_size=3,
                                         step=1, reasoning_tokens=32), 3)
LABELS = [[3.0, 0.0, 1.0]]


def test_ndcg_of_the_induced_ranking():
    assert ndcg_at_k([3, 0, 1], [3, 0, 1]) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0, 0], [0, 0, 3]) < 1.0


def test_ties_are_broken_against_the_answer():
    """An answer that scores every passage alike gets the worst order, wherever the relevant one was shown:
    the first groupwise run settled on all-zero lists, which prompt-order ties rewarded with an average."""
    worst = ndcg_at_k([0, 3, 3], [3, 0, 0])
    assert ndcg_at_k([0, 0, 0], [3, 0, 0]) == ndcg_at_k([0, 0, 0], [0, 0, 3]) == pytest.approx(worst)
    assert ndcg_at_k([0, 0, 0], [3, 0, 0]) == pytest.approx((2 ** 3 - 1) / math.log2(4) / (2 ** 3 - 1))
    assert recall_at_k([1, 1, 1], [3, 0, 0], k=1, threshold=2) == 0.0
    flat = Answer(OK, (1.0, 1.0, 1.0), 1.0, "f")
    assert component_value("label", flat, [3.0, 0.0, 1.0], 10, 2) == 0.0
    assert component_value("rbo", flat, [3.0, 0.0, 1.0], 10, 2) < component_value(
        "rbo", Answer(OK, (3.0, 0.0, 1.0), 1.0, "g"), [3.0, 0.0, 1.0], 10, 2)
    assert ndcg_at_k([1, 2, 3], [0, 0, 0]) == 0.0
    assert ndcg_at_k([0, 1, 2], [3, 0, 1], k=1) == pytest.approx(1 / 7)  # gain 2^1-1 of an ideal 2^3-1


def test_recall_and_rbo_by_hand():
    assert recall_at_k([3, 2, 1], [3, 0, 2], k=1, threshold=2) == 0.5  # one of the two relevant in the top 1
    assert recall_at_k([1, 1, 1], [0, 0, 1], k=2, threshold=2) == 0.0  # none relevant: 0
    assert rbo([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)
    # depth 1: {2} vs {0}: 0; depth 2: {2,1} vs {0,1}: 1/2; depth 3: 3/3 -> (0 + .9*.5 + .81*1) / (1 + .9 + .81)
    assert rbo([2, 1, 0], [0, 1, 2]) == pytest.approx((0.45 + 0.81) / 2.71)


@pytest.mark.parametrize("text, status, scores, fmt", [
    ("[3, 0, 1]", OK, (3, 0, 1), 1.0), ("[3, 0, 1]  \n", OK, (3, 0, 1), 1.0),
    ("[3, 0, 1] because", OK, (3, 0, 1), 0.75), ("[3, 0, 7]", OK, (3, 0, 3), 0.5),  # clipped to 0-3
    ("[1, 2]", PARTIAL, None, -0.5 / 3), ("[3, 0, 1, 2, 0, 0, 1", BROKEN, None, -0.75), ("nope", BROKEN, None, -1.0),
    ("[true, 0, 1]", BROKEN, None, -1.0),
])
def test_groupwise_answers(text, status, scores, fmt):
    answer = GROUPWISE.read(text, 3)
    assert (answer.status, answer.scores, answer.format) == (status, scores, pytest.approx(fmt))


@pytest.mark.parametrize("text, status, scores, fmt", [
    ("Document [1] score: 10\nDocument [2] score: 0\nDocument [3] score: 5", OK, (3, 0, 1.5), 1.0),
    ("Document [1] score: 10\nDocument [2] score: 0\nDocument [3] score: 5\nDone.", OK, (3, 0, 1.5), 0.75),
    ("Document [2] score: 0\nDocument [1] score: 10\nDocument [3] score: 5", OK, (3, 0, 1.5), 0.75),  # order
    ("Document [1] score: 10\nDocument [1] score: 2\nDocument [2] score: 0\nDocument [3] score: 5", OK,
     (3, 0, 1.5), 0.75),  # the first score of a document counts, as when reranking
    ("Document [1] score: 12\nDocument [2] score: 0\nDocument [3] score: 5", PARTIAL, None, -0.5 / 3),  # 0..10
    ("Document [1] score: 10\nDocument [3] score: 5", PARTIAL, None, -0.5 / 3),
    ("Document [1]: the capital is Paris", BROKEN, None, -1.0),
])
def test_groupwise_score_lines(text, status, scores, fmt):
    """groupwise.score answers one "Document [i] score: X" line per passage on 0..10, read as reranking reads
    them and put on the labels' 0..3 scale."""
    answer = LINES.read(text, 3)
    assert (answer.status, answer.scores, answer.format) == (status, scores, pytest.approx(fmt))
    if scores is not None:
        parsed = LINES.method.read_answer(text, 3)
        assert [parsed[i] * 3 / 10 for i in range(3)] == pytest.approx([min(s, 3) for s in scores])


def test_groupwise_format_credit_is_ordered_so_grpo_sees_a_spread():
    texts = ["[3, 0, 1]", "[3, 0, 1] and more", "[3, 0, 9]", "[3, 0, 1, 2]", "[3]", "[3, 0, 1, 2, 0, 0, 1", "hm"]
    values = [GROUPWISE.read(t, 3).format for t in texts]
    assert values == sorted(values, reverse=True) and values[0] == 1.0 and values[-1] == -1.0
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("target, text, status, score", [
    (GRADED, "2", OK, 2.0), (GRADED, " 3 ", OK, 3.0), (GRADED, "2 because", PARTIAL, 2.0), (GRADED, "two", BROKEN, None),
    (YES_NO, "Yes", OK, 3.0), (YES_NO, "no", OK, 0.0), (YES_NO, "Yes.", PARTIAL, 3.0), (YES_NO, "", BROKEN, None),
])
def test_pointwise_answers(target, text, status, score):
    answer = target.read(text, 1)
    assert answer.status == status and (answer.scores == (score,) if score is not None else answer.scores is None)


@pytest.mark.parametrize("text, status, chosen, fmt", [
    ("<think> the second one </think> <answer>[2]</answer>", OK, 1, 1.0),
    ("<think>hm</think>\n<answer>3</answer>\n", OK, 2, 1.0),
    ("<think>hm <answer>[1]</answer>", PARTIAL, 0, 0.5),  # the think tag never closed
    ("<think>hm</think> <answer>[1]</answer> and more", PARTIAL, 0, 0.5),
    ("<think>hm</think> <answer>[7]</answer>", BROKEN, None, -1.0),  # no such passage
    ("<think>I cannot say", BROKEN, None, -1.0),
])
def test_rank_r1_answers(text, status, chosen, fmt):
    answer = RANK_R1.read(text, 3)
    assert (answer.status, answer.format) == (status, fmt)
    if chosen is not None:
        assert answer.scores == tuple(1.0 if i == chosen else 0.0 for i in range(3)) and answer.key == str(chosen + 1)


@pytest.mark.parametrize("text, status, scores, fmt", [
    ("<think>[1] is off topic</think> <answer>[2] > [3] > [1]</answer>", OK, (1.0, 3.0, 2.0), 1.0),
    ("<think>x</think><answer>[2] > [1]</answer>", PARTIAL, (2.0, 3.0, 1.0), 0.25),  # [3] appended
    ("<think>[2] is best</think> no answer tag", BROKEN, None, -1.0),  # the thoughts' [2] does not count
])
def test_reasonrank_answers_read_only_the_answer_section(text, status, scores, fmt):
    answer = REASONRANK.read(text, 3)
    assert (answer.status, answer.scores, answer.format) == (status, scores, fmt)


def test_components_by_hand():
    good, partial, broken = Answer(OK, (3.0, 0.0, 1.0), 1.0, "a"), Answer(PARTIAL, (0.0, 0.0, 3.0), 0.25, "b"), \
        Answer(BROKEN, None, -1.0, "?")
    labels = [3.0, 0.0, 1.0]
    assert component_value("ndcg", good, labels, 10, 2) == pytest.approx(1.0)
    assert [component_value(n, partial, labels, 10, 2) for n in ("ndcg", "recall", "rbo")] == [0.0, 0.0, 0.0]
    assert [component_value(n, broken, labels, 10, 2) for n in ("ndcg", "recall", "rbo")] == [-1.0, -1.0, -1.0]
    assert [component_value(n, broken, labels, 10, 2) for n in ("distribution", "label", "coarse")] == [0, 0, 0]
    wrong = Answer(OK, (0.0, 3.0, 1.0), 1.0, "c")
    assert component_value("distribution", wrong, labels, 10, 2) == pytest.approx(1 - 6 / 9)
    assert component_value("label", good, labels, 10, 2) == 1.0 and component_value("label", wrong, labels, 10, 2) == 0
    assert component_value("coarse", wrong, labels, 10, 2) == pytest.approx(1 / 3)  # only the 1-vs-1 passage
    assert component_value("recall", wrong, labels, 1, 2) == 0.0
    assert component_value("format", partial, labels, 10, 2) == 0.25


def test_the_pooled_reward_credits_each_completion_against_the_other_passages_of_its_list():
    """Two passages of list 0 (labels 3 and 0), two completions each; a third list is never compared."""
    answers = [Answer(OK, (3.0,), 1.0, "3"), Answer(OK, (0.0,), 1.0, "0"),  # passage a (label 3)
               Answer(OK, (0.0,), 1.0, "0"), Answer(OK, (3.0,), 1.0, "3"),  # passage b (label 0)
               Answer(OK, (3.0,), 1.0, "3"), Answer(BROKEN, None, -1.0, "?")]  # list 1
    labels = [[3.0], [3.0], [0.0], [0.0], [3.0], [0.0]]
    values = pooled_values(answers, labels, [0, 0, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "d"])
    # a's "3" beats b's "0" and ties b's "3": (1 + .5) / 2; a's "0" ties b's "0", loses to b's "3": .5 / 2
    assert values[:4] == [0.75, 0.25, 0.75, 0.25]
    assert values[4:] == [0.0, 0.0]  # no parsable differently labelled passage to compare with; broken: 0


def test_reward_functions_take_trl_columns_and_record_the_answers():
    log = AnswerLog()
    funcs, weights = reward_functions({"format": 0.5, "ndcg": 1.0}, GROUPWISE, log=log)
    assert [f.__name__ for f in funcs] == ["format_reward", "ndcg_reward"] and weights == [0.5, 1.0]
    completions, prefix = ["3, 0, 1]", "no idea"], ["[", "["]  # the prompt ended with "[": put back
    assert funcs[0](completions, LABELS * 2, answer_prefix=prefix) == [1.0, -1.0]
    assert funcs[1](completions, LABELS * 2, answer_prefix=prefix) == [pytest.approx(1.0), -1.0]
    assert log.take() == ["[3, 0, 1]", "?"] and log.take() == []  # only the first function records
    assert funcs[0]([[{"role": "assistant", "content": "[1, 0, 0]"}]], LABELS) == [1.0]  # conversational
    pooled = make_reward("pooled", GRADED)
    assert pooled(["3", "0"], [[3.0], [0.0]], list_id=[0, 0], prompts=["p1", "p2"]) == [1.0, 1.0]


@pytest.mark.parametrize("completion", ["3, 0, 1]", "2, 0, 1] and more", "3, 0, 1", "1, 2]", "no"])
def test_a_well_formed_answer_is_one_the_method_reads_the_same_way(completion):
    """The rewards read what ``groupwise.generate`` reads: its scores where the format is right."""
    answer = GROUPWISE.read("[" + completion, 3)
    read = GROUPWISE.method.read_answer(completion, 3)
    if answer.status == OK:
        assert read == {i: s for i, s in enumerate(answer.scores)}
    else:  # a short or broken list: the method scores some documents by its fallback
        assert len(read) < 3


def test_methods_grpo_cannot_reward_are_refused():
    from rankwise.errors import InputError

    with pytest.raises(InputError, match="scoring mode"):
        target_for(build_method("setwise.heapsort", ORACLE), 3)
    with pytest.raises(InputError, match="groupwise.generate"):
        target_for(build_method("groupwise.logits", ORACLE), 3)
    with pytest.raises(InputError, match="generate mode"):
        target_for(build_method("listwise.first", ORACLE, labels="alpha", window_size=3, step=1), 3)
    assert math.isclose(GRADED.read("1", 1).scores[0], 1.0)
