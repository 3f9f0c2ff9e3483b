"""Outputs are checked before any model loads, appear only whole (a temporary file moved into place), and
never replace a file another process wrote meanwhile: both files are kept and the message names them."""

from __future__ import annotations

import os

import pytest

from rankwise import llm
from rankwise.cli import main
from rankwise.cli.outputs import Outputs, check_writable
from rankwise.data import read_run, write_candidates_jsonl
from rankwise.errors import InputError
from rankwise.methods import registry
from rankwise.methods.pointwise import Pointwise
from rankwise.types import Candidate, Query, Request
from tests.oracle import OracleBackend

REQUESTS = [Request(Query(f"q{q}", f"capital of France {q}"),
                    tuple(Candidate(f"d{q}-{i}", f"passage {q}-{i} about Paris", score=10.0 - i) for i in range(4)))
            for q in range(2)]


def _cli(args: list, capsys) -> tuple[int, str]:
    """``rankwise ARGS`` in this process: (exit code, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def judge(monkeypatch, tmp_path):
    """``test.judge`` on an ``oracle`` backend (this process only); ``loads`` counts model loads and
    ``during`` runs in the middle of reranking (another process, as it were)."""
    grades = {c.text: int(c.docid[-1]) % 4 for r in REQUESTS for c in r.candidates}
    state = {"loads": 0, "during": lambda: None}

    class Judge(OracleBackend):
        def choice_logprobs(self, prompts, choices):
            state["during"]()
            return super().choice_logprobs(prompts, choices)

    def load(model, **_):
        state["loads"] += 1
        return Judge(grades)

    monkeypatch.setitem(llm.KINDS, "oracle", load)
    monkeypatch.setitem(registry._REGISTRY, "test.judge", registry.MethodInfo(
        "test.judge", lambda backend, **o: Pointwise(backend, "pointwise.yes_no", "yes_no", **o), "oracle", "judge"))
    candidates = tmp_path / "cands.jsonl"
    write_candidates_jsonl(REQUESTS, candidates)
    state["rerank"] = ["rerank", "--method", "test.judge", "--model", "qrels", "--candidates", candidates, "--no-cache"]
    return state


def test_a_file_appears_whole_and_an_existing_one_is_replaced_only_with_overwrite(tmp_path):
    target = tmp_path / "sub" / "run.trec"
    outputs = Outputs(overwrite=False)
    assert outputs.add(target) == target and not target.parent.exists()  # checking creates nothing
    assert outputs.write(target, lambda tmp: tmp.write_text("ours\n")) == target
    outputs.finish()
    assert target.read_text() == "ours\n" and os.listdir(target.parent) == ["run.trec"]  # no temporary left

    replaced = Outputs(overwrite=True)
    replaced.add(target)
    replaced.write(target, lambda tmp: tmp.write_text("again\n"))
    replaced.finish()
    assert target.read_text() == "again\n" and os.listdir(target.parent) == ["run.trec"]


@pytest.mark.parametrize("name, kept", [("run.trec", "run.rankwise-{pid}.trec"),
                                        ("cands.jsonl.gz", "cands.rankwise-{pid}.jsonl.gz"),
                                        ("run", "run.rankwise-{pid}")])
def test_a_target_written_meanwhile_is_left_alone_and_ours_kept_beside(tmp_path, name, kept):
    target = tmp_path / name
    outputs = Outputs(overwrite=False)
    outputs.add(target)
    target.write_text("theirs\n")  # another process, after our start-up check
    older = tmp_path / kept.format(pid=os.getpid())
    older.write_text("an older file of that name\n")  # never replaced either
    written = outputs.write(target, lambda tmp: tmp.write_text("ours\n"))
    assert written == tmp_path / kept.format(pid=f"{os.getpid()}-2")
    assert target.read_text() == "theirs\n" and written.read_text() == "ours\n"
    assert older.read_text() == "an older file of that name\n"
    with pytest.raises(InputError) as raised:
        outputs.finish()
    assert str(raised.value) == (f"{target}: appeared while this command ran (another process wrote it?); left "
                                 f"it as it is and wrote ours to {written}; pass --overwrite to replace such files")


def test_where_an_output_cannot_go(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match=f"^{tmp_path}: is a directory, expected a file to write$"):
        check_writable(tmp_path)
    with pytest.raises(InputError, match=f"^{a_file}/deeper/run.trec: cannot write here: {a_file} is a file, "
                                         "not a directory$"):
        check_writable(a_file / "deeper" / "run.trec")
    check_writable(tmp_path / "new" / "deeper" / "run.trec")  # missing directories are created when written
    assert not (tmp_path / "new").exists()
    outputs = Outputs(overwrite=True, inputs=(a_file,))
    with pytest.raises(InputError, match="would overwrite an input file"):
        outputs.add(a_file)
    outputs.add(tmp_path / "run.trec")
    with pytest.raises(InputError, match="named for two outputs"):
        outputs.add(tmp_path / "." / "run.trec")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(InputError, match=f"no permission to write in {locked}$"):
            check_writable(locked / "run.trec")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("flag", ["--output", "--usage", "--rank-llm"])
@pytest.mark.parametrize("problem", ["a directory", "under a file", "exists"])
def test_rerank_checks_every_output_before_the_model_loads(judge, tmp_path, capsys, flag, problem):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me\n")
    bad = {"a directory": tmp_path, "under a file": a_file / "out.json", "exists": a_file}[problem]
    paths = {"--output": tmp_path / "out.trec", flag: bad}
    code, err = _cli([*judge["rerank"], *[x for kv in paths.items() for x in kv]], capsys)
    assert code == 2 and _error(err).startswith(f"error: {bad}: ") and judge["loads"] == 0
    assert a_file.read_text() == "keep me\n" and not (tmp_path / "out.trec").exists()


@pytest.mark.parametrize("command", ["run", "convert", "retrieve"])
def test_other_commands_check_their_output_first(judge, tmp_path, capsys, command):
    pipeline = tmp_path / "judge.yaml"
    pipeline.write_text("pipeline:\n- rerank: test.judge\n  model: qrels\n")
    source = tmp_path / "cands.jsonl"
    args = {"run": ["run", pipeline, "--candidates", source, "--no-cache", "--output", tmp_path],
            "convert": ["convert", source, tmp_path],
            "retrieve": ["retrieve", "--dataset", "no-such-dataset", "--output", tmp_path]}[command]
    code, err = _cli(args, capsys)
    assert code == 2 and _error(err) == f"error: {tmp_path}: is a directory, expected a file to write"
    assert judge["loads"] == 0


def test_a_run_written_by_another_process_meanwhile_is_kept_and_so_is_ours(judge, tmp_path, capsys):
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    judge["during"] = lambda: out.exists() or out.write_text("theirs\n")
    code, err = _cli([*judge["rerank"], "--output", out, "--usage", usage], capsys)
    kept = tmp_path / f"out.rankwise-{os.getpid()}.trec"
    assert code == 2 and _error(err) == (
        f"error: {out}: appeared while this command ran (another process wrote it?); left it as it is and wrote "
        f"ours to {kept}; pass --overwrite to replace such files")
    assert out.read_text() == "theirs\n" and set(read_run(kept)) == {"q0", "q1"}
    assert usage.is_file()  # the other outputs are still written
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cands.jsonl", "out.trec", kept.name, "usage.json"])

    # with --overwrite ours replaces theirs
    out.unlink()
    code, err = _cli([*judge["rerank"], "--output", out, "--overwrite"], capsys)
    assert code == 0 and set(read_run(out)) == {"q0", "q1"}


def test_the_exit_is_clean_when_an_output_cannot_be_written(judge, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.trec"

    def full(*_, **__):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rankwise.cli.outputs.publish", full)
    code, err = _cli([*judge["rerank"], "--output", out], capsys)
    assert code == 2 and _error(err) == f"error: {out}: cannot write: No space left on device"
    assert list(tmp_path.iterdir()) == [tmp_path / "cands.jsonl"]  # no temporary file left behind
