"""A cache location that cannot be written never ends a run: the output cache falls back to no cache (one
warning), a cache file that refuses writes keeps answering, and what a run cannot do without (a converted or
extracted model) fails with one line naming the path and RANKWISE_CACHE."""

from __future__ import annotations

import logging
import os
import sqlite3
import zipfile

import pytest

from rankwise.errors import InputError
from rankwise.llm.cache import OutputCache, open_cache


@pytest.fixture()
def blocked(tmp_path, monkeypatch):
    """RANKWISE_CACHE inside a regular file: nothing can be created there, not even by root."""
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("a user's file\n")
    monkeypatch.setenv("RANKWISE_CACHE", str(a_file / "cache"))
    return a_file


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_cache_under_a_file_means_no_cache_with_one_warning(blocked, caplog):
    with caplog.at_level(logging.WARNING, logger="rankwise"):
        assert open_cache(True) is None
        assert open_cache(blocked / "elsewhere.sqlite") is None
    first, second = _warnings(caplog)
    assert first.startswith(f"cannot use the output cache {blocked}/cache/outputs.sqlite (") and first.endswith(
        "running without a cache (set RANKWISE_CACHE or --cache to a writable place)") and "\n" not in first
    assert second.startswith(f"cannot use the output cache {blocked}/elsewhere.sqlite")
    assert blocked.read_text() == "a user's file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only directories")
@pytest.mark.parametrize("with_file", [False, True])
def test_a_read_only_directory_means_no_cache(tmp_path, caplog, with_file):
    if with_file:
        OutputCache(tmp_path / "outputs.sqlite").put_many({"k": [1.0]})
    tmp_path.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING, logger="rankwise"):
            assert open_cache(tmp_path / "outputs.sqlite") is None
    finally:
        tmp_path.chmod(0o755)
    assert len(_warnings(caplog)) == 1


def test_no_cache_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "cache"))
    assert open_cache(False) is None and open_cache(None) is None
    assert not (tmp_path / "cache").exists()


def test_a_cache_file_that_refuses_writes_keeps_answering_and_stores_nothing(tmp_path, monkeypatch, caplog):
    path = tmp_path / "outputs.sqlite"
    OutputCache(path).put_many({"old": [1.0]})
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda p, **kw: connect(f"file:{p}?mode=ro", uri=True, **kw))
    with caplog.at_level(logging.WARNING, logger="rankwise"):
        cache = OutputCache(path)  # a read-only file (what chmod 444 is to anyone but root)
        assert cache.get_many(["old", "new"]) == {"old": [1.0]}
        assert cache.put_many({"new": [2.0]}) == {"new": [2.0]}  # computed values still reach the caller
        assert cache.put_many({"newer": [3.0]}) == {"newer": [3.0]}
    [warning] = _warnings(caplog)
    assert warning.startswith(f"the output cache {path} cannot be written (attempt to write a readonly database)")
    monkeypatch.undo()
    assert OutputCache(path).get_many(["old", "new", "newer"]) == {"old": [1.0]}


def test_a_sha256_that_cannot_be_remembered_is_still_computed(blocked, tmp_path, caplog):
    from rankwise.llm.models.fetching import file_sha256

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    with caplog.at_level(logging.WARNING, logger="rankwise"):
        digest = file_sha256(model)
    assert len(digest) == 64
    assert _warnings(caplog)[0].startswith(f"cannot remember the SHA256 of model.gguf in {blocked}/cache/sha256")


def test_converting_or_extracting_a_model_needs_a_writable_cache(blocked, tmp_path):
    from rankwise.llm.models.conversion import hf_dir_for_gguf
    from rankwise.llm.models.fetching import extract_zip

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(InputError, match=rf"^{blocked}/cache/hf/model-[0-9a-f]{{8}}: cannot write the transformers "
                                         r"copy of the GGUF model here \(.+\); set RANKWISE_CACHE to a writable "
                                         "directory$"):
        hf_dir_for_gguf(model)
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(InputError, match=rf"^{blocked}/cache/hf/tiny: cannot write the model extracted from "
                                         r"model.zip here \(.+\); set RANKWISE_CACHE"):
        extract_zip(archive, "tiny")
