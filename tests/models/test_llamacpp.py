"""The llama.cpp engine on the real SmolLM2-135M GGUF (98 MB, loaded once): scores, prefix reuse, generation."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from rankwise.errors import InputError, ModelError  # noqa: E402
from rankwise.llm.protocol import chat_messages, render_chat  # noqa: E402
from rankwise.llm.engines.llamacpp import (  # noqa: E402
    LlamaCppBackend, cpu_has_amx, extra_buffer_types_off, quant_type_name)

YES_NO = ["Yes|yes| Yes", "No|no| No"]
INSTRUCTION = ("You judge search results. Read the query and the passage, then say whether the passage "
               "answers the query. Be strict: a passage that only mentions the topic does not answer it. "
               "Query: how do cats purr and why do they do it?\n")
PASSAGES = ["Cats purr by vibrating the muscles of the larynx, often when content.",
            "The stock market fell sharply on Tuesday after the announcement.",
            "Purring is produced by rapid twitching of the laryngeal muscles in cats.",
            "Sourdough bread rises because wild yeast ferments the dough.",
            "Domestic cats purr when they are fed, stroked, or sometimes when injured.",
            "Paris is the capital and most populous city of France.",
            "A cat's purr has a frequency between 25 and 150 Hz.",
            "Bitcoin mining consumes large amounts of electricity."]


@pytest.fixture(scope="module")
def backend(gguf):
    return LlamaCppBackend(gguf, n_ctx=2048)


def _prompts(backend: LlamaCppBackend) -> list[str]:
    """Raw prompts (no chat template: fewer tokens to compute in tests)."""
    return [f"{INSTRUCTION}Passage: {p}\nAnswer Yes or No.\nAnswer:" for p in PASSAGES]


def test_choice_logprobs_are_finite_normalised_log_probabilities(backend):
    out = backend.choice_logprobs(_prompts(backend)[:3], YES_NO)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert (np.logaddexp(out[:, 0], out[:, 1]) <= 1e-6).all()  # Yes and No together hold at most all mass


def test_a_choice_sums_its_variants(backend):
    prompts = _prompts(backend)[:2]
    whole = backend.choice_logprobs(prompts, ["Yes|yes| Yes"])[:, 0]
    parts = backend.choice_logprobs(prompts, ["Yes", "yes", " Yes"])
    np.testing.assert_allclose(whole, np.logaddexp.reduce(parts, axis=1), atol=1e-5)


def test_shared_prefixes_are_computed_once_with_the_same_scores(backend):
    prompts = _prompts(backend)
    backend.choice_logprobs(["Elsewhere"], YES_NO)  # the KV cache now shares nothing with the prompts
    before = backend.usage.copy()
    together = backend.choice_logprobs(prompts, YES_NO)
    cost = backend.usage - before
    assert cost.calls == 8 and cost.forward_passes == 8
    assert cost.prompt_tokens == sum(len(backend._prompt_ids(p)) for p in prompts)
    assert cost.computed_tokens < 0.5 * cost.prompt_tokens  # the instruction ran once, not 8 times

    alone = np.zeros_like(together)
    before = backend.usage.copy()
    for i in reversed(range(len(prompts))):
        backend.choice_logprobs(["Elsewhere"], YES_NO)
        alone[i] = backend.choice_logprobs([prompts[i]], YES_NO)[0]
    assert (backend.usage - before).computed_tokens == cost.prompt_tokens + 8 * backend.count_tokens("Elsewhere")
    np.testing.assert_allclose(together, alone, atol=1e-3)


def test_the_kv_cache_carries_over_between_calls(backend):
    prompt = _prompts(backend)[0]
    first = backend.choice_logprobs([prompt], YES_NO)
    before = backend.usage.copy()
    again = backend.choice_logprobs([prompt], YES_NO)
    assert (backend.usage - before).computed_tokens == 1  # only the last token, for its logits
    np.testing.assert_allclose(first, again, atol=1e-5)


def test_generate_is_greedy_and_stops_at_stop_strings(backend):
    prompt = backend.format_chat("Count from 1 to 10, separated by spaces.")
    [full] = backend.generate([prompt], max_new_tokens=20)
    assert "3" in full
    before = backend.usage.copy()
    [cut] = backend.generate([prompt], max_new_tokens=20, stop=["3"])
    assert "3" not in cut and cut and full.startswith(cut)
    cost = backend.usage - before
    assert cost.calls == 1 and 0 < cost.completion_tokens < 20


def test_format_chat_renders_the_gguf_template(backend):
    text = backend.format_chat("Hello", system="Be brief.")
    template = backend.llm.metadata["tokenizer.chat_template"]
    assert text == render_chat(template, chat_messages("Hello", "Be brief."))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    assert backend._prompt_ids(text) == backend._tokenize(text)  # SmolLM2's metadata asks for no BOS


def test_tokens_are_counted_and_truncated(backend):
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    n = backend.count_tokens(text)
    assert n > 5
    short = backend.truncate(text, 5)
    assert backend.count_tokens(short) <= 5 and text.startswith(short)
    assert backend.truncate(text, n) == text


def test_describes_itself(backend, gguf):
    assert backend.engine == "llamacpp" and backend.dtype == "q4_1"
    assert backend.name == gguf.stem and backend.usage.model == backend.name
    assert quant_type_name(15) == "q4_k_m" and quant_type_name(0) == "float32"
    assert quant_type_name(None) == "gguf"


def test_bad_input_is_reported(backend, tmp_path):
    with pytest.raises(InputError, match="more than the context of 2048"):
        backend.choice_logprobs(["word " * 3000], YES_NO)
    with pytest.raises(ModelError, match="not found"):
        LlamaCppBackend(tmp_path / "missing.gguf")


def test_extra_buffer_types_can_be_turned_off(backend, gguf):
    """The AMX workaround: the default model parameters change only inside the block."""
    import llama_cpp.llama_cpp as lib

    assert cpu_has_amx(frozenset({"avx512f", "amx_tile", "amx_bf16"}))
    assert not cpu_has_amx(frozenset({"avx2", "fma", "avx512_bf16"}))

    with extra_buffer_types_off():
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True
    plain = LlamaCppBackend(gguf, n_ctx=512, extra_bufts=False)
    prompts = _prompts(backend)[:2]
    np.testing.assert_allclose(plain.choice_logprobs(prompts, YES_NO),
                               backend.choice_logprobs(prompts, YES_NO), atol=1e-3)


@pytest.mark.slow
def test_prompt_strings_and_tokens_equal_transformers(backend, gguf):
    """The transformers engine loads the same GGUF: same chat rendering, same token ids."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    text = tok.apply_chat_template([{"role": "user", "content": "Hello there"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == backend.format_chat("Hello there")
    prompt = _prompts(backend)[0]
    assert tok(prompt, add_special_tokens=False)["input_ids"] == backend._prompt_ids(prompt)


@pytest.mark.slow
def test_qwen_05b_ranks_the_relevant_passage_first():
    from rankwise.llm.models import resolve_model

    try:
        path = resolve_model("qwen2.5-0.5b").gguf_file
    except ModelError as exc:
        pytest.skip(f"qwen2.5-0.5b not installed: {exc}")
    qwen = LlamaCppBackend(path, n_ctx=2048)
    assert qwen.dtype == "q4_k_m"
    prompts = [qwen.format_chat(f"Passage: {p}\nQuery: how do cats purr and why do they do it?\n"
                                "Does the passage answer the query? Answer Yes or No.") for p in PASSAGES]
    scores = qwen.choice_logprobs(prompts, YES_NO)
    p_yes = scores[:, 0] - np.logaddexp(scores[:, 0], scores[:, 1])
    relevant = [0, 2, 4, 6]
    assert min(p_yes[relevant]) > max(np.delete(p_yes, relevant))
    assert qwen.usage.computed_tokens < qwen.usage.prompt_tokens  # the chat header ran once
