"""The transformers engine on a randomly initialised tiny model: shapes, equivalences, accounting."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_lm import tiny_backend

YES_NO = ["Yes|yes| Yes", "No|no| No"]


def _prompts(backend, n: int = 7) -> list[str]:
    passages = ["the capital of France is Paris", "plants make food from light", "bitcoin mining",
                "sourdough bread rises because of yeast", "Paris", "yes no", "the capital of bitcoin"]
    return [backend.format_chat(f"Judge whether the passage answers the query. Passage: {p} "
                                f"Query: the capital of France Answer 'Yes' or 'No'.") for p in passages[:n]]


@pytest.fixture(scope="module")
def backend():
    return tiny_backend(dtype="float32", batch_size=3)


def test_choice_logprobs_are_normalised_log_probabilities(backend):
    out = backend.choice_logprobs(_prompts(backend), YES_NO)
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert np.isfinite(out).all() and (out <= 0).all()


def test_prefix_reuse_and_batching_do_not_change_scores(backend):
    prompts = _prompts(backend)
    backend.prefix_reuse, backend.batch_size = True, 3
    before = backend.usage.copy()
    shared = backend.choice_logprobs(prompts, YES_NO)
    spent = backend.usage.copy() - before
    assert spent.computed_tokens < spent.prompt_tokens  # the chat header + instruction ran once
    backend.prefix_reuse, backend.batch_size = False, 1
    single = np.concatenate([backend.choice_logprobs([p], YES_NO) for p in prompts])
    backend.prefix_reuse, backend.batch_size = True, 3
    np.testing.assert_allclose(shared, single, atol=1e-4)


def test_continuation_logprobs_match_unbatched(backend):
    prompts = _prompts(backend, 4)
    together = backend.continuation_logprobs(prompts, ["the capital of France"] * 4)
    alone = [backend.continuation_logprobs([p], ["the capital of France"])[0] for p in prompts]
    np.testing.assert_allclose(together, alone, atol=1e-3)
    assert (together < 0).all()


def test_usage_counts_every_prompt(backend):
    before = backend.usage.copy()
    prompts = _prompts(backend, 5)
    backend.choice_logprobs(prompts, YES_NO)
    spent = backend.usage.copy() - before
    assert spent.calls == 5
    assert spent.prompt_tokens == sum(backend.count_tokens(p) for p in prompts)
    assert spent.forward_passes == 1 + 2  # shared prefix + two batches of <= 3
    assert spent.seconds > 0


def test_generate_is_greedy_and_cuts_at_stop(backend):
    prompts = _prompts(backend, 3)
    first = backend.generate(prompts, max_new_tokens=6)
    again = backend.generate(prompts, max_new_tokens=6)
    assert first == again and all(isinstance(t, str) for t in first)
    stopped = backend.generate(prompts, max_new_tokens=6, stop=[" "])
    assert all(" " not in t for t in stopped)


def test_truncate_respects_the_token_budget(backend):
    text = "the capital of France is Paris " * 20
    cut = backend.truncate(text, 10)
    assert backend.count_tokens(cut) <= 10 < backend.count_tokens(text)
    assert backend.truncate("Paris", 10) == "Paris"


def test_format_chat_applies_the_template(backend):
    rendered = backend.format_chat("hello", system="be brief")
    assert rendered == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"


def test_bf16_computes_the_head_in_fp32():
    """bf16 weights, but the log-softmax is fp32: yes/no scores stay distinct instead of rounding into ties."""
    backend = tiny_backend(dtype="bfloat16")
    out = backend.choice_logprobs(_prompts(backend), YES_NO)
    assert out.dtype == np.float32 and len(set(out[:, 0].tolist())) > 1


def _group_prompts(backend, n: int = 6) -> list[str]:
    """groupwise.logits' shape: one long group of passages, then one short question per document."""
    group = " ".join(f"[{i}] passage {i} about the capital of France, plants and bread." for i in range(1, 60))
    head = backend.format_chat(f"Score every passage for the query: the capital of France.\n{group}")
    assert backend.count_tokens(head) > 800
    return [head + f"Document [{i}] score: " for i in range(1, n + 1)]


def test_a_long_shared_head_runs_once_and_scores_as_without_reuse(backend):
    prompts = _group_prompts(backend)
    before = backend.usage.copy()
    shared = backend.choice_logprobs(prompts, ["0", "1", "2"])
    spent = backend.usage.copy() - before
    split = backend._split(backend.count_tokens(prompts[0]) - 1)
    assert split >= 768
    assert spent.computed_tokens == split + sum(backend.count_tokens(p) - split for p in prompts)
    assert spent.computed_tokens < spent.prompt_tokens / 4  # the group ran once, not once per document
    backend.prefix_reuse, backend.batch_size = False, 1
    single = np.concatenate([backend.choice_logprobs([p], ["0", "1", "2"]) for p in prompts])
    backend.prefix_reuse, backend.batch_size = True, 3
    np.testing.assert_allclose(shared, single, atol=1e-4)


def test_a_wide_suffix_runs_alone_without_filler_rows(backend):
    """A lone long prompt (setwise, FIRST) is one pass of its own width, not one filled up with copies."""
    long_prompt = _prompts(backend, 1)[0].replace("Paris", "Paris " + "and bread " * 150)
    ids = backend._tokenize(long_prompt)
    width = len(ids) - backend._split(len(ids) - 1)
    assert width > 256 and backend._rows(width) == 1 and backend._rows(96) == 3
    before = backend.usage.copy()
    backend.choice_logprobs([long_prompt, long_prompt + " yes"], YES_NO)
    assert (backend.usage.copy() - before).forward_passes == 1 + 2  # the shared chat header, then one pass each
