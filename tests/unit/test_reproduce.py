"""benchmarks/reproduce.py: the rows cover every profile, docs/reproduce.md's table is generated from them, the
dry run prints the documented commands, and a row whose model is not on this machine is reported, not run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rankwise.llm.profiles import profile_for, profiles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("benchmarks_reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def test_one_row_per_profile_each_running_its_profile(reproduce):
    rows = reproduce.load_rows()
    assert sorted(r.profile for r in rows) == sorted(p.name for p in profiles())
    for row in rows:
        profile = profile_for(row.model)
        assert profile is not None and profile.name == row.profile, row.model
        assert row.method in profile.methods, row.profile
        assert set(row.published) <= set(reproduce.DATASETS), row.profile


def test_the_docs_table_is_generated_from_the_rows(reproduce):
    from rankwise.bench.headline import replace_marked

    docs = (ROOT / "docs" / "reproduce.md").read_text(encoding="utf-8")
    table = reproduce.docs_table(reproduce.load_rows())
    assert replace_marked(docs, table, "reproduce") == docs, "run: python benchmarks/reproduce.py --write-docs"
    assert "| rankt5 | `Soyoung97/RankT5-3b` | `rankwise rerank --dataset dl19 --run bm25 --top-k 100 --method " \
           "pointwise.logit --model Soyoung97/RankT5-3b --max-passage-tokens 480 " \
           "--output dl19.rankt5-3b.trec` |" in table
    assert "0.7173 / 0.6887 (rank_llm's reproduction table)" in table and "0.6697 on DL19" in table


def test_dry_run_prints_each_command(reproduce, capsys):
    reproduce.main(["--dry-run", "--only", "reasonrank,rankt5", "--datasets", "dl19,dl20", "--runs", "out"])
    lines = capsys.readouterr().out.splitlines()
    base = "rankwise rerank --dataset {} --run bm25 --top-k 100 --method {} --model {} --output out/{}.{}.trec"
    rankt5 = base.replace(" --output", " --max-passage-tokens 480 --output")
    assert lines == [rankt5.format("dl19", "pointwise.logit", "Soyoung97/RankT5-3b", "dl19", "rankt5-3b"),
                     rankt5.format("dl20", "pointwise.logit", "Soyoung97/RankT5-3b", "dl20", "rankt5-3b"),
                     base.format("dl19", "listwise.window", "liuwenhan/reasonrank-7B", "dl19", "reasonrank-7b"),
                     base.format("dl20", "listwise.window", "liuwenhan/reasonrank-7B", "dl20", "reasonrank-7b")]
    with pytest.raises(SystemExit):
        reproduce.main(["--dry-run", "--only", "monoT5"])


def test_models_not_on_this_machine_are_not_run(reproduce, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("rankwise.llm.models.hub_snapshot", lambda hub_id: None)  # nothing in the hub cache
    monkeypatch.setattr(reproduce.subprocess, "run", lambda *a, **k: pytest.fail("nothing may run"))
    monkeypatch.chdir(tmp_path)  # where ./Rank-R1-7B-merged does not exist
    reproduce.main(["--only", "reasonrank,rank_r1", "--datasets", "dl19", "--output", str(tmp_path / "t.md")])
    table = (tmp_path / "t.md").read_text()
    assert "| reasonrank | `liuwenhan/reasonrank-7B` | dl19 | not run here: liuwenhan/reasonrank-7B is not in the " \
           "local hub cache (no hub access) | - | - |" in table
    assert "| rank_r1 | `./Rank-R1-7B-merged` | dl19 | not run here: ./Rank-R1-7B-merged: no such file or " \
           "directory | - | - |" in table
    assert capsys.readouterr().out.strip() == table.strip()


def test_the_comparison_table_shows_the_difference(reproduce):
    row = next(r for r in reproduce.load_rows() if r.profile == "monot5")
    table = reproduce.comparison_table([(row, "dl19", 0.7012), (row, "dl20", "failed (exit 2): error: x")])
    assert "| monot5 | `castorini/monot5-3b-msmarco-10k` | dl19 | 0.7012 | 0.7173 | -0.0161 |" in table
    assert "| monot5 | `castorini/monot5-3b-msmarco-10k` | dl20 | failed (exit 2): error: x | 0.6887 | - |" in table
