"""`rankwise rerank` end to end through the real entry point, on a tiny model saved to disk."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rankwise.data import read_run, write_candidates_jsonl
from rankwise.types import Candidate, Query, Request
from tests.tiny_lm import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(path)
    return path


@pytest.fixture()
def candidates(tmp_path):
    requests = [Request(Query(f"q{q}", f"the capital of France {q}"),
                        tuple(Candidate(f"d{q}-{i}", f"Paris is the capital {i}", score=10.0 - i) for i in range(6)))
                for q in range(2)]
    path = tmp_path / "cands.jsonl"
    write_candidates_jsonl(requests, path)
    return path


def _rerank(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rankwise.cli", "rerank", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", **env})


def test_rerank_writes_every_candidate_and_the_usage(model_dir, candidates, tmp_path):
    out, usage, cache = tmp_path / "out.trec", tmp_path / "usage.json", tmp_path / "cache.sqlite"
    args = ["--candidates", str(candidates), "--method", "pointwise.yes_no", "--model", str(model_dir),
            "--engine", "transformers", "--dtype", "float32", "--top-k", "4", "--cache", str(cache)]
    done = _rerank(*args, "--output", str(out), "--usage", str(usage))
    assert done.returncode == 0, done.stderr
    run = read_run(out)
    assert {q: len(d) for q, d in run.items()} == {"q0": 6, "q1": 6}
    assert list(run["q0"])[4:] == ["d0-4", "d0-5"]  # past top-k: first-stage order
    report = json.loads(usage.read_text())
    for key in ("calls", "forward_passes", "prompt_tokens", "computed_tokens", "completion_tokens", "seconds",
                "engine", "dtype", "cpu", "per_query"):
        assert key in report
    assert report["calls"] == 8 and report["engine"] == "transformers" and set(report["per_query"]) == {"q0", "q1"}

    # the same experiment again: every answer from the cache, nothing computed, identical run
    again = _rerank(*args, "--output", str(tmp_path / "again.trec"), "--usage", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["cache_hits"] == 8 and second["computed_tokens"] == 0 and second["forward_passes"] == 0
    assert second["queries_from_cache"] == 2 and second["queries_computed"] == 0
    assert "2 queries (0 computed, 2 all from cache)" in again.stderr
    assert read_run(tmp_path / "again.trec") == run


def test_rerank_refuses_to_overwrite_and_names_bad_input(model_dir, candidates, tmp_path):
    out = tmp_path / "out.trec"
    out.write_text("keep me\n")
    done = _rerank("--candidates", str(candidates), "--method", "pointwise.yes_no", "--model", str(model_dir),
                   "--output", str(out))
    assert done.returncode == 2 and "already exists" in done.stderr and out.read_text() == "keep me\n"
    assert len(done.stderr.strip().splitlines()) == 1

    bad = _rerank("--candidates", str(candidates), "--method", "pointwise.nope", "--model", str(model_dir),
                  "--engine", "transformers", "--output", str(tmp_path / "x.trec"))
    assert bad.returncode == 2 and "unknown method 'pointwise.nope'" in bad.stderr


def test_an_unwritable_cache_is_skipped_and_no_cache_writes_nothing(model_dir, candidates, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("a user's file\n")
    base = ["--candidates", str(candidates), "--method", "pointwise.yes_no", "--model", str(model_dir),
            "--engine", "transformers", "--dtype", "float32", "--top-k", "4"]
    done = _rerank(*base, "--output", str(tmp_path / "a.trec"), RANKWISE_CACHE=str(a_file / "cache"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if "cache" in line and "from cache" not in line] == [
        f"cannot use the output cache {a_file}/cache/outputs.sqlite (Not a directory): running without a cache "
        "(set RANKWISE_CACHE or --cache to a writable place)"]
    assert len(read_run(tmp_path / "a.trec")) == 2 and a_file.read_text() == "a user's file\n"

    fresh = tmp_path / "fresh-cache"
    done = _rerank(*base, "--no-cache", "--output", str(tmp_path / "b.trec"), RANKWISE_CACHE=str(fresh))
    assert done.returncode == 0, done.stderr
    assert read_run(tmp_path / "b.trec") == read_run(tmp_path / "a.trec") and not fresh.exists()


def test_method_options_reach_the_method_and_a_wrong_one_is_named(model_dir, candidates, tmp_path):
    base = ["--candidates", str(candidates), "--model", str(model_dir), "--engine", "transformers",
            "--dtype", "float32", "--top-k", "4", "--no-cache"]
    done = _rerank(*base, "--method", "pairwise.heapsort", "-o", "rule=probability", "--option", "k=2",
                   "--output", str(tmp_path / "pw.trec"), "--usage", str(tmp_path / "pw.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "pw.json").read_text())
    assert report["calls"] == 2 * report["comparisons"] > 0 and 0 <= report["inconsistent"] <= report["comparisons"]
    assert f"of {report['comparisons']} comparisons" in done.stderr
    wrong = _rerank(*base, "--method", "pairwise.heapsort", "-o", "rulez=probability", "--output", str(tmp_path / "x.trec"))
    assert wrong.returncode == 2 and "method pairwise.heapsort has no option 'rulez'" in wrong.stderr
    malformed = _rerank(*base, "--method", "pairwise.heapsort", "-o", "probability", "--output", str(tmp_path / "y.trec"))
    assert malformed.returncode == 2 and "--option takes KEY=VALUE" in malformed.stderr


def test_parse_method_options_reads_yaml_scalars():
    from rankwise.cli.rerank import parse_method_options

    assert parse_method_options(["k=10", "rule=probability", "reuse_comparisons=false", "w=0.5"]) == \
        {"k": 10, "rule": "probability", "reuse_comparisons": False, "w": 0.5}


def test_methods_list_names_every_method():
    done = subprocess.run([sys.executable, "-m", "rankwise.cli", "methods", "list"], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("pointwise.yes_no", "pointwise.graded", "pointwise.qlm"):
        assert name in done.stdout
