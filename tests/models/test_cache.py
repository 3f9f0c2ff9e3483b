"""The SQLite output cache: a second run returns identical scores without a forward pass."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from rankwise.llm.cache import CachedBackend, OutputCache
from tests.tiny_lm import tiny_backend


def test_second_run_is_free_and_identical(tmp_path):
    backend = tiny_backend(dtype="float32")
    cached = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    prompts = [cached.format_chat(f"passage {i} about Paris") for i in range(6)]
    first = cached.choice_logprobs(prompts, ["Yes", "No"])
    passes = backend.usage.forward_passes
    # a new process-level view of the same file
    again = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite")).choice_logprobs(prompts, ["Yes", "No"])
    np.testing.assert_array_equal(first, again)
    assert backend.usage.forward_passes == passes
    assert backend.usage.cache_hits == 6


def test_only_misses_reach_the_model(tmp_path):
    backend = tiny_backend(dtype="float32")
    cached = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    a = [cached.format_chat(f"passage {i}") for i in range(4)]
    cached.choice_logprobs(a[:2], ["Yes", "No"])
    before = backend.usage.copy()
    out = cached.choice_logprobs(a, ["Yes", "No"])
    assert (backend.usage.copy() - before).calls == 2 + 2  # 2 computed + 2 hits
    assert backend.usage.cache_hits == 2
    np.testing.assert_allclose(out, backend.choice_logprobs(a, ["Yes", "No"]), atol=1e-5)


def test_different_choices_are_different_keys(tmp_path):
    cached = CachedBackend(tiny_backend(dtype="float32"), OutputCache(tmp_path / "c.sqlite"))
    p = [cached.format_chat("passage")]
    assert not np.array_equal(cached.choice_logprobs(p, ["Yes", "No"]), cached.choice_logprobs(p, ["0", "1"]))


def test_generation_is_cached(tmp_path):
    backend = tiny_backend(dtype="float32")
    cached = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    p = [cached.format_chat("say something")]
    first = cached.generate(p, max_new_tokens=4)
    passes = backend.usage.forward_passes
    assert cached.generate(p, max_new_tokens=4) == first and backend.usage.forward_passes == passes



def test_query_likelihood_is_cached(tmp_path):
    backend = tiny_backend(dtype="float32")
    cached = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    prompts = [cached.format_chat(f"passage {i} about Paris") for i in range(3)]
    first = cached.continuation_logprobs(prompts, ["capital of France"] * 3)
    passes = backend.usage.forward_passes
    again = cached.continuation_logprobs(prompts + [prompts[0]], ["capital of France"] * 3 + ["other query"])
    np.testing.assert_array_equal(again[:3], first)
    assert backend.usage.cache_hits == 3 and backend.usage.forward_passes > passes  # only the new pair ran
    np.testing.assert_allclose(again[3], backend.continuation_logprobs(prompts[:1], ["other query"])[0], rtol=1e-5)


WRITER = """
import sys
from rankwise.llm.cache import OutputCache
cache = OutputCache(sys.argv[1])
start = int(sys.argv[2])
for i in range(start, start + 200, 10):
    cache.put_many({f"k{j}": [j] for j in range(i, i + 10)})
"""


def test_two_processes_write_at_once(tmp_path):
    path = str(tmp_path / "c.sqlite")
    OutputCache(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(s)]) for s in (0, 200)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    cache = OutputCache(path)
    assert len(cache) == 400 and cache.get_many(["k0", "k399"]) == {"k0": [0], "k399": [399]}


def test_a_model_retrained_into_the_same_directory_is_not_answered_from_the_old_scores(tmp_path):
    """The cache knows a local model by its path plus its weights' fingerprint (registry models by name)."""
    from rankwise.llm import load_backend
    from rankwise.llm.models import resolve_model
    from tests.tiny_lm import tiny_model, tiny_tokenizer

    model_dir, cache = tmp_path / "runs" / "model", tmp_path / "c.sqlite"
    tok = tiny_tokenizer()
    tok.save_pretrained(model_dir)
    tiny_model(len(tok), seed=0).save_pretrained(model_dir)
    first = load_backend(str(model_dir), engine="transformers", dtype="float32", cache=cache)
    prompts = [first.format_chat(f"passage {i} about Paris") for i in range(3)]
    old = first.choice_logprobs(prompts, ["Yes", "No"])
    key = resolve_model(model_dir).cache_key
    assert key.startswith(f"{model_dir}@")

    tiny_model(len(tok), seed=1).save_pretrained(model_dir)  # retrained: new weights, same directory
    assert resolve_model(model_dir).cache_key != key
    second = load_backend(str(model_dir), engine="transformers", dtype="float32", cache=cache)
    new = second.choice_logprobs(prompts, ["Yes", "No"])
    assert second.usage.cache_hits == 0 and second.usage.forward_passes > 0
    assert not np.allclose(old, new)
    again = load_backend(str(model_dir), engine="transformers", dtype="float32", cache=cache)
    np.testing.assert_array_equal(again.choice_logprobs(prompts, ["Yes", "No"]), new)
    assert again.usage.cache_hits == 3


def test_a_registry_model_is_known_to_the_cache_by_its_name():
    from rankwise.llm.models import ResolvedModel

    assert ResolvedModel("qwen2.5-0.5b", "causal-lm", hub_id="Qwen/Qwen2.5-0.5B-Instruct").cache_key == "qwen2.5-0.5b"
