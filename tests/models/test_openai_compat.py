"""The OpenAI-compatible engine against a real llama-cpp-python server on loopback (SmolLM2 GGUF).

The in-process llama.cpp engine on the same file is the reference: same prompt strings, same scores.
"""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

from rankwise.errors import RankwiseError  # noqa: E402
from rankwise.llm.engines.llamacpp import LlamaCppBackend  # noqa: E402
from rankwise.llm.engines.openai import (  # noqa: E402
    OpenAICompatBackend, first_token_top_logprobs)
from rankwise.llm.protocol import score_from_top_logprobs
from tests.llm_server import free_port, llama_server  # noqa: E402

YES_NO = ["Yes|yes| Yes", "No|no| No"]
PASSAGES = ["Cats purr by vibrating the muscles of the larynx.", "The stock market fell on Tuesday.",
            "Purring comes from the laryngeal muscles of cats.", "Sourdough rises because of yeast.",
            "Paris is the capital of France.", "A cat's purr is between 25 and 150 Hz."]


@pytest.fixture(scope="module")
def server(gguf):
    with llama_server(gguf, n_ctx=2048) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def remote(server, gguf):
    # llama-cpp-python's server defaults to repeat_penalty=1.1; ask for plain greedy decoding.
    with OpenAICompatBackend(server, "smollm2", chat_template_from=gguf, concurrency=3,
                             extra_body={"repeat_penalty": 1.0}) as backend:
        yield backend


@pytest.fixture(scope="module")
def local(gguf):
    return LlamaCppBackend(gguf, n_ctx=2048)


def _prompts(backend) -> list[str]:
    return [backend.format_chat(f"Passage: {p}\nQuery: how do cats purr?\nDoes the passage answer the "
                                f"query? Answer Yes or No.") for p in PASSAGES]


def test_chat_template_from_the_gguf_renders_as_the_local_engine(remote, local):
    assert remote.format_chat("Hello", system="Be brief.") == local.format_chat("Hello", system="Be brief.")
    assert _prompts(remote) == _prompts(local)


def test_choice_logprobs_match_the_in_process_engine(remote, local):
    prompts = _prompts(remote)
    before = remote.usage.copy()
    got = remote.choice_logprobs(prompts, YES_NO)  # three requests at a time; order must hold
    assert got.shape == (len(prompts), 2) and got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, local.choice_logprobs(prompts, YES_NO), atol=1e-2)
    cost = remote.usage - before
    assert cost.calls == len(prompts) and cost.forward_passes == len(prompts)
    assert cost.prompt_tokens == sum(local.count_tokens(p) for p in prompts)


def test_generation_returns_the_greedy_text(remote, local):
    prompt = remote.format_chat("Write one sentence about the sea.")
    before = remote.usage.copy()
    texts = remote.generate([prompt, prompt], max_new_tokens=12, stop=["\n\n"])
    expected = local.generate([prompt], max_new_tokens=12, stop=["\n\n"])[0]
    # The server batches concurrent requests and threads differently: on AVX2-only CPUs a near-tie flips a
    # later greedy token ("a vast, mysterious" vs "a vast and mysterious"), so only the opening words agree.
    assert all(text.strip() and text.split()[:4] == expected.split()[:4] for text in texts)
    cost = remote.usage - before
    assert cost.calls == 2 and 0 < cost.completion_tokens <= 24


def test_tokens_come_from_the_server(remote, local):
    text = "The quick brown fox jumps over the lazy dog."
    assert remote.count_tokens(text) == local.count_tokens(text)
    assert remote.exact_tokens is True
    assert remote.truncate(text, 4) == local.truncate(text, 4)
    assert remote.truncate(text, 100) == text


def test_a_request_the_server_rejects_fails_at_once(server):
    wrong = server.removesuffix("/v1") + "/v2"  # a mistyped base URL: HTTP 404, not worth retrying
    with OpenAICompatBackend(wrong, "smollm2", max_retries=3, backoff=5, chat_template="x") as bad:
        start = time.monotonic()
        with pytest.raises(RankwiseError, match="/v2/completions: HTTP 404"):
            bad.generate(["Hello"])
        assert time.monotonic() - start < 5  # no retries on a 4xx answer


def test_a_dead_port_fails_after_the_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with OpenAICompatBackend(url, "m", max_retries=2, backoff=0.1, chat_template="x") as dead:
        start = time.monotonic()
        with pytest.raises(RankwiseError, match=r"no answer after 3 attempts: ConnectError"):
            dead.generate(["Hello"])
        assert time.monotonic() - start >= 0.1 + 0.2  # backoff doubled between attempts


def test_the_timeout_is_honoured():
    """A server that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with OpenAICompatBackend(url, "m", timeout=0.3, max_retries=1, backoff=0.05) as slow:
            start = time.monotonic()
            with pytest.raises(RankwiseError, match=r"after 2 attempts: timed out after 0.3 s"):
                slow.generate(["Hello"])
            assert 0.6 <= time.monotonic() - start < 5


def test_a_choice_missing_from_the_top_k_gets_the_floor():
    top = {"Yes": math.log(0.5), "No": math.log(0.3), "Maybe": math.log(0.1)}
    yes, no, absent = score_from_top_logprobs(top, [["Yes", " Yes"], ["No"], ["Perhaps"]])
    assert yes == pytest.approx(math.log(0.5)) and no == pytest.approx(math.log(0.3))
    assert absent == pytest.approx(math.log(0.1) - math.log(2))  # min(0.1 listed, 0.1 unlisted) / 2
    top = {"Yes": math.log(0.6), "No": math.log(0.39)}  # only 1% left for everything else
    assert score_from_top_logprobs(top, [["Perhaps"]])[0] == pytest.approx(math.log(0.01 / 2))


def test_both_logprob_shapes_servers_answer_with_are_read():
    legacy = {"tokens": ["Yes"], "token_logprobs": [-0.1], "top_logprobs": [{"Yes": -0.1, "No": -2.4}]}
    chat = {"content": [{"token": "Yes", "logprob": -0.1,
                         "top_logprobs": [{"token": "Yes", "logprob": -0.1}, {"token": "No", "logprob": -2.4}]}]}
    assert first_token_top_logprobs(legacy) == first_token_top_logprobs(chat) == {"Yes": -0.1, "No": -2.4}
    assert first_token_top_logprobs({}) is None
