"""``rankwise retrieve | evaluate | compare``: outputs, pinned scores, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rankwise.cli import main
from rankwise.cli.measures import gather_metrics
from rankwise.data import read_candidates, read_run


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``rankwise ARGS`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """A BEIR directory of four documents and two judged queries."""
    d = tmp_path / "tiny"
    (d / "qrels").mkdir(parents=True)
    docs = [("d1", "Cats", "Cats sleep most of the day."), ("d2", "Dogs", "Dogs are running in the park."),
            ("d3", "", "A bird in the hand."), ("d4", "Shoes", "Running shoes for marathon runners.")]
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                            for i, t, x in docs))
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "running dogs"}) + "\n"
                                     + json.dumps({"_id": "q2", "text": "sleeping cats"}) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n")
    return d


# --metrics parsing

@pytest.mark.parametrize("args, expected", [
    (["--metrics", "nDCG@10", "RR@10", "R@100", "--json"], ["--metrics", "nDCG@10 RR@10 R@100", "--json"]),
    (["-m", "RR(rel=2)@10", "AP,P@5"], ["-m", "RR(rel=2)@10 AP,P@5"]),
    (["--metrics", "nDCG@10", "runs/a.trec", "b.trec"], ["--metrics", "nDCG@10", "runs/a.trec", "b.trec"]),
    (["--metrics", "x.y", "AP"], ["--metrics", "x.y AP"]),  # the first value is always taken
    (["--metrics", "--json"], ["--metrics", "--json"]),
])
def test_gather_metrics(args: list[str], expected: list[str]) -> None:
    assert gather_metrics(args) == expected


# evaluate

@pytest.mark.parametrize("folder, qrels, expected", [
    ("dl19", "qrels.dl19-passage.txt", 0.5058),
    ("dl20", "qrels.dl20-passage.txt", 0.4796),
])
def test_evaluate_json_pins_bm25(request, capsys, folder: str, qrels: str, expected: float) -> None:
    root = request.getfixturevalue(folder)
    code, out, _ = run_cli(["evaluate", "--json", "--run", root / "run.bm25.top100.trec",
                            "--qrels", root / qrels, "--metrics", "nDCG@10"], capsys)
    assert code == 0
    assert out.count("\n") == 1 and json.loads(out)["nDCG@10"] == expected
    n = 43 if folder == "dl19" else 54
    assert json.loads(out)["queries"] == {"convention": "run-queries", "averaged_over": n, "in_run": n,
                                          "in_qrels": n, "missing_from_run": 0, "unjudged_in_run": 0}


def test_evaluate_several_metrics_after_one_flag(dl19, capsys) -> None:
    code, out, _ = run_cli(["evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels",
                            dl19 / "qrels.dl19-passage.txt", "--metrics", "nDCG@10", "RR(rel=2)@10", "R@100",
                            "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert {k: result[k] for k in ("nDCG@10", "RR(rel=2)@10", "R@100")} == \
        {"nDCG@10": 0.5058, "RR(rel=2)@10": 0.7024, "R@100": 0.4531}


def test_evaluate_table_and_per_query(dl19, capsys) -> None:
    args = ["evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels", dl19 / "qrels.dl19-passage.txt",
            "-m", "nDCG@10", "-m", "AP"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "nDCG@10" in out and "0.5058" in out and "43 queries" in out
    code, out, _ = run_cli(args + ["--per-query", "--json"], capsys)
    result = json.loads(out)
    assert result["aggregate"]["nDCG@10"] == 0.5058 and len(result["per_query"]) == 43


def test_evaluate_notes_missing_queries_in_json_and_on_stderr(dl19, tmp_path, capsys) -> None:
    lines = (dl19 / "run.bm25.top100.trec").read_text().splitlines()
    first_qid = lines[0].split()[0]
    subset = tmp_path / "subset.trec"
    subset.write_text("\n".join(line for line in lines if line.split()[0] == first_qid) + "\n")
    qrels = dl19 / "qrels.dl19-passage.txt"
    code, out, err = run_cli(["evaluate", "--json", "--run", subset, "--qrels", qrels, "-m", "nDCG@10"], capsys)
    assert code == 0 and "42 qrels queries not in the run are left out" in err
    run_queries = json.loads(out)["nDCG@10"]
    assert json.loads(out)["other_convention"]["convention"] == "all-qrels"
    code, out, err = run_cli(["evaluate", "--json", "--run", subset, "--qrels", qrels, "-m", "nDCG@10",
                              "--all-qrels-queries"], capsys)
    assert "42 missing from the run count as 0" in err
    assert json.loads(out)["nDCG@10"] == pytest.approx(run_queries / 43, abs=1e-4)


# errors: exit 2 and one line naming the problem

def test_malformed_qrels_line(dl19, tmp_path, capsys) -> None:
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 d1 1\n1 0 d2\n")
    code, _, err = run_cli(["evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels", qrels], capsys)
    assert code == 2
    assert one_error_line(err) == f"error: {qrels}:2: expected 4 columns (qid iter docid grade), got 3"


def test_duplicated_docid_in_run(dl19, tmp_path, capsys) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 d2 2 1.5 x\nq1 Q0 d1 3 1.0 x\n")
    code, _, err = run_cli(["evaluate", "--run", run, "--qrels", dl19 / "qrels.dl19-passage.txt"], capsys)
    assert code == 2
    assert one_error_line(err) == f"error: {run}:3: duplicate docid d1 for query q1"


def test_unknown_measure(dl19, capsys) -> None:
    code, _, err = run_cli(["evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels",
                            dl19 / "qrels.dl19-passage.txt", "--metrics", "nDCG@10", "nDGC@10"], capsys)
    assert code == 2
    assert one_error_line(err) == "error: unknown measure 'nDGC@10' (did you mean nDCG?)"


def test_missing_file(dl19, tmp_path, capsys) -> None:
    missing = tmp_path / "absent.trec"
    code, _, err = run_cli(["evaluate", "--run", missing, "--qrels", dl19 / "qrels.dl19-passage.txt"], capsys)
    assert code == 2
    assert one_error_line(err) == f"error: {missing}: no such file"


# compare

def test_compare_json(dl19, capsys) -> None:
    code, out, _ = run_cli(["compare", dl19 / "run.bm25.top100.trec", dl19 / "run.bm25_rm3.top100.trec",
                            "--qrels", dl19 / "qrels.dl19-passage.txt", "--metrics", "nDCG@10", "AP",
                            "--permutations", "1000", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["queries"] == 43 and list(result["measures"]) == ["nDCG@10", "AP"]
    ndcg = result["measures"]["nDCG@10"]
    assert ndcg["mean_a"] == 0.5058
    assert ndcg["delta"] == pytest.approx(ndcg["mean_b"] - ndcg["mean_a"], abs=2e-4)
    assert 0 < ndcg["t_test_p"] <= 1 and 0 < ndcg["randomisation_p"] <= 1


def test_compare_table_with_metrics_before_the_runs(dl19, capsys) -> None:
    code, out, _ = run_cli(["compare", "--metrics", "nDCG@10", "RR@10", dl19 / "run.bm25.top100.trec",
                            dl19 / "run.bm25.top100.trec", "--qrels", dl19 / "qrels.dl19-passage.txt",
                            "--permutations", "200"], capsys)
    assert code == 0 and "RR@10" in out and "+0.0000" in out and "1.0000" in out


# retrieve

def test_retrieve_writes_run_and_candidates(tiny_beir, tmp_path, capsys) -> None:
    run_file, cands = tmp_path / "out" / "run.trec", tmp_path / "out" / "cands.json.gz"
    code, out, err = run_cli(["retrieve", "--dataset", tiny_beir, "--retriever", "bm25", "--top-k", "3",
                              "--output", run_file, "--candidates", cands, "--index", tmp_path / "idx"], capsys)
    assert code == 0 and out == "" and "retrieved 2 queries" in err
    run = read_run(run_file)
    assert list(run["q1"])[0] == "d2" and list(run["q2"]) == ["d1"]
    requests = read_candidates(cands)
    assert [r.query.qid for r in requests] == ["q1", "q2"]
    assert requests[1].candidates[0].text == "Cats sleep most of the day." and requests[1].candidates[0].title == "Cats"
    assert (tmp_path / "idx" / "rankwise.json").is_file()

    # the index is reused; existing outputs are refused without --overwrite
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", run_file, "--index", tmp_path / "idx"],
                           capsys)
    assert code == 2 and one_error_line(err) == f"error: {run_file}: already exists; pass --overwrite to replace it"
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", run_file, "--index", tmp_path / "idx",
                            "--overwrite"], capsys)
    assert code == 0 and "loaded bm25 index of 4 documents" not in err  # --overwrite rebuilds it
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", tmp_path / "again.trec", "--index",
                            tmp_path / "idx"], capsys)
    assert code == 0 and "loaded bm25 index of 4 documents" in err


def test_retrieve_refuses_to_write_over_an_input(tiny_beir, capsys) -> None:
    target = tiny_beir / "queries.jsonl"
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", target, "--overwrite"], capsys)
    assert code == 2 and "would overwrite an input file" in one_error_line(err)


def test_retrieve_needs_a_corpus(dl19, tmp_path, capsys) -> None:
    code, _, err = run_cli(["retrieve", "--dataset", dl19, "--output", tmp_path / "r.trec"], capsys)
    assert code == 2
    assert "has no document corpus to retrieve from" in one_error_line(err)


def test_retrieve_rejects_a_stale_or_foreign_index(tiny_beir, tmp_path, capsys) -> None:
    run_cli(["retrieve", "--dataset", tiny_beir, "--output", tmp_path / "a.trec", "--index", tmp_path / "i"], capsys)
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--retriever", "dense", "--output",
                            tmp_path / "b.trec", "--index", tmp_path / "i"], capsys)
    assert code == 2 and "index was built by --retriever bm25, not dense" in one_error_line(err)
    corpus = tiny_beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "d5", "text": "new"}) + "\n")
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", tmp_path / "c.trec", "--index",
                            tmp_path / "i"], capsys)
    assert code == 2 and "index covers 4 documents, not the dataset's 5" in one_error_line(err)


def test_retrieve_option_errors(tiny_beir, tmp_path, capsys) -> None:
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--retriever", "splade", "--output",
                            tmp_path / "r.trec"], capsys)
    assert code == 2 and one_error_line(err) == "error: unknown retriever 'splade' (choose bm25 or dense)"
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--model", "minilm-l6", "--output",
                            tmp_path / "r.trec"], capsys)
    assert code == 2 and one_error_line(err) == "error: --model applies to --retriever dense only"


# the installed entry point

def _rankwise(*args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("rankwise")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_entry_point_evaluate(dl19) -> None:
    done = _rankwise("evaluate", "--json", "--run", dl19 / "run.bm25.top100.trec",
                     "--qrels", dl19 / "qrels.dl19-passage.txt", "--metrics", "nDCG@10")
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and json.loads(done.stdout)["nDCG@10"] == 0.5058


def test_entry_point_errors_exit_non_zero(dl19, tmp_path) -> None:
    bad = tmp_path / "qrels.txt"
    bad.write_text("1 0 d1 high\n")
    done = _rankwise("evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels", bad)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {bad}:1: grade 'high' is not an integer\n"
    done = _rankwise("evaluate", "--run", dl19 / "run.bm25.top100.trec", "--qrels", bad, "-m", "nDGC@10")
    assert done.returncode == 2 and done.stderr == "error: unknown measure 'nDGC@10' (did you mean nDCG?)\n"


def test_retrieve_output_must_be_a_file(tiny_beir, tmp_path, capsys) -> None:
    code, _, err = run_cli(["retrieve", "--dataset", tiny_beir, "--output", tmp_path, "--overwrite"], capsys)
    assert code == 2 and one_error_line(err) == f"error: {tmp_path}: is a directory, expected a file to write"


def test_usage_errors_print_usage_not_a_traceback() -> None:
    """No command, an unknown one, a missing argument: click's usage message and exit 2 (typer >= 0.24
    raises its vendored click's exceptions, which must be caught too)."""
    for args, message in ((("nosuch",), "No such command 'nosuch'"),
                          (("bench",), "Missing argument 'config'"),
                          (("methods",), "")):
        done = _rankwise(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr, args
        assert message in done.stderr, args
    done = _rankwise()
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Usage" in done.stdout + done.stderr
