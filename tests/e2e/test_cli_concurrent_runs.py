"""Two `rankwise rerank` processes started at once on one input and one cache give byte-identical runs, and
the cache holds one row per prompt (the first value written wins; the other process answers with it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rankwise.llm.cache import OutputCache


@pytest.mark.slow  # 6 min on 2 loaded cores (two llama.cpp processes)
def test_two_processes_on_one_input_and_one_cache_write_identical_runs(dl19, gguf, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "RANKWISE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "rankwise.cli", "rerank", "--method", "pointwise.yes_no", "--model", "smollm2-135m",
            "--engine", "llamacpp", "--dataset", str(dl19), "--run", "bm25", "--max-queries", "2", "--top-k", "5"]
    runs = [tmp_path / "a.trec", tmp_path / "b.trec"]
    started = [subprocess.Popen([*args, "--output", str(run)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for run in runs]
    for process in started:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0 and "Traceback" not in err, err
    assert runs[0].read_bytes() == runs[1].read_bytes()
    assert len(OutputCache(cache / "outputs.sqlite")) == 2 * 5  # one row per prompt: 2 queries x top 5
