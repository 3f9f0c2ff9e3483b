"""CLI rough edges a new user hit (issue 29): each answer is one clear line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rankwise.cli import main
from rankwise.cli.app import app
from rankwise.types import Candidate, Query, Request


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip()


def test_version():
    from rankwise import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"rankwise {__version__}"


def test_a_missing_run_file_is_named_as_a_missing_file(capsys, dl19, tmp_path):
    message = _error(capsys, ["rerank", "--dataset", str(dl19), "--run", "missing.trec", "--method",
                              "pointwise.yes_no", "--model", "smollm2-135m", "--output", str(tmp_path / "o.trec")])
    assert message.startswith("error: missing.trec: no such run file") and "\n" not in message


def test_an_unknown_dataset_lists_the_known_names(capsys, dl19, tmp_path):
    message = _error(capsys, ["rerank", "--dataset", "trec-covid", "--run", "bm25", "--method",
                              "pointwise.yes_no", "--model", "smollm2-135m", "--output", str(tmp_path / "o.trec")])
    assert "trec-covid: no such file, directory or dataset id" in message
    assert "known names: dl19, dl20, scifact" in message


@pytest.mark.parametrize("top_k", ["0", "-5"])
def test_a_top_k_below_one_is_refused(capsys, tmp_path, top_k):
    from rankwise.data import write_candidates_jsonl

    candidates = tmp_path / "c.jsonl"
    write_candidates_jsonl([Request(Query("1", "q"), (Candidate("a", "x"), Candidate("b", "y")))], candidates)
    message = _error(capsys, ["rerank", "--candidates", str(candidates), "--method", "pointwise.yes_no",
                              "--model", "smollm2-135m", "--output", str(tmp_path / "o.trec"), "--top-k", top_k])
    assert message == f"error: top_k must be a positive integer, got {top_k}"


def test_rerank_help_names_every_engine_and_keeps_extras_in_brackets():
    result = CliRunner().invoke(app, ["rerank", "--help"], env={"COLUMNS": "250"})
    assert "auto|transformers|seq2seq|llamacpp|openai|vllm" in result.output
    assert "rankwise[ray]" in result.output


def test_serve_on_a_busy_port_fails_before_loading_the_model(capsys, monkeypatch):
    import socket
    import time

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the port was checked")

    monkeypatch.setattr("rankwise.llm.load_backend", no_loading)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.perf_counter()
        message = _error(capsys, ["serve", "--model", "smollm2-135m", "--method", "pointwise.yes_no",
                                  "--port", str(port)])
    assert message.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "choose another --port" in message
    assert time.perf_counter() - started < 10  # nothing heavy either (it took 11 s with the model)


def test_compare_scores_the_queries_both_runs_hold_and_says_how_many(capsys, dl19, tmp_path):
    """`compare` after `--max-queries 3` against a full BM25 run reported -0.46, p=0.0000: the 40 queries
    missing from the short run scored 0. Now only the judged queries both runs hold, counted."""
    import json

    from rankwise.data import read_run, write_run

    bm25, qrels = dl19 / "run.bm25.top100.trec", dl19 / "qrels.dl19-passage.txt"
    full = read_run(bm25)
    three = tmp_path / "three.trec"
    write_run({q: full[q] for q in list(full)[:3]}, three)
    main(["compare", str(bm25), str(three), "--qrels", str(qrels), "-m", "nDCG@10", "--permutations", "200", "--json"])
    shared = json.loads(capsys.readouterr().out)
    assert shared["queries"] == 3 and shared["missing_from_b"] == 40 and shared["qrels_queries"] == 43
    assert shared["measures"]["nDCG@10"]["delta"] == 0.0  # the same three rankings
    main(["compare", str(bm25), str(three), "--qrels", str(qrels), "-m", "nDCG@10", "--permutations", "200"])
    table = " ".join(capsys.readouterr().out.split())
    assert "3 judged queries both runs hold, of 43 qrels queries (0 not in A, 40 not in B" in table
    main(["compare", str(bm25), str(three), "--qrels", str(qrels), "-m", "nDCG@10", "--permutations", "200",
          "--all-qrels-queries"])
    table = " ".join(capsys.readouterr().out.split())
    assert "43 queries: every qrels query, 0 missing from A and 40 from B scored 0" in table


def test_models_list_fits_a_terminal_and_paths_are_asked_for(capsys):
    main(["models", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert "qwen2.5-0.5b" in "\n".join(lines) and max(len(line) for line in lines) <= 100
    main(["models", "list", "--paths"])
    assert " path " in capsys.readouterr().out
