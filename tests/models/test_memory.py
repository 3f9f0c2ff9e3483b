"""Memory a model needs in its run dtype, and the warning before loading one that may not fit."""

from __future__ import annotations

import logging

import pytest

from rankwise.llm.memory import GB, check_memory, memory_need, parameter_count


def test_the_estimate_matches_the_measured_qwen_1_5b_in_bf16() -> None:
    """benchmarks/results/memory_load.md: 4.41 GB resident, 4.43 GB peak from a bf16 copy; 10.39 GB peak
    from an fp32 copy (mapped whole while cast)."""
    need = memory_need(1_543_714_304, "bfloat16")
    assert need.resident / GB == pytest.approx(4.4, abs=0.3) and need.peak == need.resident
    from_fp32 = memory_need(1_543_714_304, "bfloat16", stored="float32")
    assert from_fp32.peak / GB == pytest.approx(10.4, abs=0.5) and from_fp32.resident == need.resident
    assert memory_need(1_543_714_304, "float32").resident > need.resident
    small = memory_need(1_000_000, "float32")
    assert small.peak >= small.resident  # loading never needs less than running


def test_a_load_that_may_not_fit_is_announced(caplog) -> None:
    need = memory_need(1_543_714_304, "bfloat16", stored="float32")
    with caplog.at_level(logging.WARNING, logger="rankwise.llm.memory"):
        assert check_memory("qwen2.5-1.5b", need, available=4 * GB) is False
        assert check_memory("qwen2.5-1.5b", need, available=64 * GB) is True
    assert len(caplog.records) == 1
    assert "loading qwen2.5-1.5b needs ~4.4 GB resident, ~10.6 GB peak while loading (1.54B parameters in " \
           "bfloat16); 4.0 GB is available now" in caplog.text


def test_parameters_are_counted_from_the_weights_on_disk(tmp_path) -> None:
    from tests.tiny_lm import save_tiny_model, tiny_model, tiny_tokenizer

    save_tiny_model(tmp_path)
    expected = sum(p.numel() for p in tiny_model(len(tiny_tokenizer())).parameters())
    counted = parameter_count(hf_dir=tmp_path)
    assert counted in (expected, expected - tiny_model(len(tiny_tokenizer())).get_input_embeddings().weight.numel())
    assert parameter_count() is None


def test_loading_in_process_warns_first_when_memory_is_short(tmp_path, monkeypatch, caplog) -> None:
    from rankwise.llm import load_backend
    from tests.tiny_lm import save_tiny_model

    save_tiny_model(tmp_path)
    monkeypatch.setattr("rankwise.llm.memory.available_bytes", lambda: 1000)
    with caplog.at_level(logging.WARNING, logger="rankwise.llm.memory"):
        load_backend(str(tmp_path), engine="transformers", dtype="float32")
    assert "1000" not in caplog.text and "0.0 GB is available now" in caplog.text and "in float32" in caplog.text
