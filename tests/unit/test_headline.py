"""The headline matrix: bootstrap intervals, cells that resume per query and agree across CPU classes, and the
README table generated from the committed cells."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from scipy.stats import binom

from rankwise.bench import BenchConfig, in_process, run_bench
from rankwise.bench.headline import (
    headline_markdown,
    headline_rows,
    load_cells,
    replace_marked,
)
from rankwise.bench.resume import Disagreement, agree
from rankwise.bench.runner import cell_path
from rankwise.data import load_dataset
from rankwise.data.selection import qid_key
from rankwise.errors import InputError
from rankwise.eval.significance import bootstrap_ci
from tests.unit.test_bench import OracleBackends

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_interval_of_a_mean_by_hand() -> None:
    # 20 zeros and 20 ones: the resampled mean is Binomial(40, 1/2) / 40, whose 2.5% and 97.5% points are
    # 14/40 and 26/40
    low, high = bootstrap_ci([0.0] * 20 + [1.0] * 20)
    assert (low, high) == (binom.ppf(0.025, 40, 0.5) / 40, binom.ppf(0.975, 40, 0.5) / 40) == (0.35, 0.65)
    assert bootstrap_ci([0.3]) == (0.3, 0.3) and bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_ci([0.1, 0.9, 0.4]) == bootstrap_ci([0.1, 0.9, 0.4])  # seeded


@pytest.fixture(scope="module")
def five(dl19):
    ds = load_dataset(str(dl19))
    judged = [r for r in ds.requests("bm25", top_k=100) if r.query.qid in ds.qrels]
    return ds, sorted(judged, key=lambda r: qid_key(r.query.qid))  # the order bench selects max_queries in


def _config(dl19: Path, **extra) -> BenchConfig:
    return BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 5, "models": ["oracle"],
                                  "methods": ["pointwise.graded"], "cache": False, "checkpoint": 2} | extra)


def _cpu(monkeypatch, flags: set[str]) -> None:
    """This machine as a CPU of the given flags (run_bench reads rankwise.llm.hardware.cpu_info, as the runner
    tests of test_bench.py do, which imports torch at call time)."""
    from rankwise.llm import hardware

    monkeypatch.setattr(hardware, "cpu_info", lambda: hardware.CpuInfo("Test CPU", "test", frozenset(flags)))


def _counting(cfg: BenchConfig, ds, requests, seen: list[str], fail_after: int | None = None):
    inner = in_process(cfg, OracleBackends(requests, ds.qrels))

    def rerank(spec, reqs, top_k):
        if fail_after is not None and len(seen) >= fail_after:
            raise RuntimeError("stopped")
        seen.extend(r.query.qid for r in reqs)
        return inner(spec, reqs, top_k)

    return rerank


def test_a_cell_round_trips_with_per_query_scores_top10_and_timing(dl19, five, tmp_path, monkeypatch) -> None:
    ds, requests = five
    _cpu(monkeypatch, {"avx2"})
    cfg = _config(dl19)
    cells = run_bench(cfg, tmp_path, log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], []))
    cell = cells[1]
    assert json.loads(cell_path(tmp_path, cfg, str(dl19), "bm25", cfg.methods[0]).read_text()) == cell
    assert load_cells(tmp_path)[cell_path(tmp_path, cfg, str(dl19), "bm25", cfg.methods[0]).name] == cell
    assert len(cell["per_query_metrics"]) == 5 and all(len(top) == 10 for top in cell["top10"].values())
    assert cell["cpu_class"] == "AVX2, no bf16" and cell["timings"][0]["queries"] == 5
    assert cell["timings"][0]["other_cores"] >= 0.0  # how busy other processes kept the CPU meanwhile
    assert not list(tmp_path.glob("cells/*.partial.json"))  # a finished cell leaves no partial store


def test_a_stopped_cell_resumes_with_the_queries_it_lacks(dl19, five, tmp_path, monkeypatch, capsys) -> None:
    ds, requests = five
    _cpu(monkeypatch, {"avx2"})
    cfg = _config(dl19)
    seen: list[str] = []
    failed = run_bench(cfg, tmp_path / "a", log=lambda _: None,
                       rerank=_counting(cfg, ds, requests[:5], seen, fail_after=3))
    assert "error" in failed[1] and len(seen) == 3  # blocks of 1 and 2 queries finished, the third stopped
    assert len(json.loads(next((tmp_path / "a").glob("cells/*.partial.json")).read_text())["queries"]) == 3
    capsys.readouterr()
    resumed = run_bench(cfg, tmp_path / "a", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], seen))
    assert seen == [r.query.qid for r in requests[:5]]  # each query reranked once over both runs
    bar = capsys.readouterr().err  # the cell's progress bar counts on from the stored queries
    assert "pointwise.graded on oracle:  60%|" in bar and "3/5" in bar and "0/5" not in bar
    straight = run_bench(cfg, tmp_path / "b", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], []))
    assert resumed[1]["per_query_metrics"] == straight[1]["per_query_metrics"]
    assert resumed[1]["top10"] == straight[1]["top10"]
    again: list[str] = []
    run_bench(cfg, tmp_path / "a", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], again))
    assert again == []  # a finished cell is skipped


def test_a_stopped_cell_carried_to_another_machine_resumes_there_with_both_timings(dl19, five, tmp_path,
                                                                                  monkeypatch) -> None:
    ds, requests = five
    cfg = _config(dl19)
    _cpu(monkeypatch, {"avx2"})
    run_bench(cfg, tmp_path / "here", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], [], fail_after=3))
    (tmp_path / "there" / "cells").mkdir(parents=True)
    for partial in (tmp_path / "here" / "cells").glob("*.partial.json"):  # what a commit of the cells carries
        (tmp_path / "there" / "cells" / partial.name).write_bytes(partial.read_bytes())
    _cpu(monkeypatch, {"avx2", "avx512_bf16", "amx_bf16"})
    seen: list[str] = []
    cell = run_bench(cfg, tmp_path / "there", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], seen))[1]
    assert seen == [r.query.qid for r in requests[3:5]]  # only the queries the carried store lacks
    assert [(t["cpu_class"], t["queries"]) for t in cell["timings"]] == [("AVX2, no bf16", 3), ("AMX", 2)]
    straight = run_bench(cfg, tmp_path / "fresh", log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], []))
    assert cell["per_query_metrics"] == straight[1]["per_query_metrics"]


def test_a_cell_retimed_on_another_cpu_class_keeps_its_ndcg_and_both_timings(dl19, five, tmp_path,
                                                                             monkeypatch) -> None:
    ds, requests = five
    cfg = _config(dl19)
    _cpu(monkeypatch, {"avx2"})
    first = run_bench(cfg, tmp_path, log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], []))[1]
    seen: list[str] = []
    run_bench(cfg, tmp_path, log=lambda _: None, retime=True, rerank=_counting(cfg, ds, requests[:5], seen))
    assert seen == []  # this class has timed it: nothing to re-run
    _cpu(monkeypatch, {"avx2", "avx512_bf16", "amx_bf16"})
    cell = run_bench(cfg, tmp_path, log=lambda _: None, retime=True,
                     rerank=_counting(cfg, ds, requests[:5], seen))[1]
    assert len(seen) == 5 and cell["metrics"] == first["metrics"]
    assert [t["cpu_class"] for t in cell["timings"]] == ["AVX2, no bf16", "AMX"]
    assert cell["reruns"][0] | {"largest_query_change": 0.0} == {
        "cpu": "Test CPU (AMX)", "cpu_class": "AMX", "nDCG@10": first["metrics"]["nDCG@10"], "top10_changed": 0,
        "largest_query_change": 0.0}


def test_a_retimed_cell_that_disagrees_is_an_error_and_kept_aside(dl19, five, tmp_path, monkeypatch) -> None:
    ds, requests = five
    cfg = _config(dl19)
    _cpu(monkeypatch, {"avx2"})
    run_bench(cfg, tmp_path, log=lambda _: None, rerank=_counting(cfg, ds, requests[:5], []))
    path = cell_path(tmp_path, cfg, str(dl19), "bm25", cfg.methods[0])
    stored = json.loads(path.read_text())
    qid = next(iter(stored["per_query_metrics"]))
    stored["per_query_metrics"][qid]["nDCG@10"] -= 0.05  # as if another CPU had ranked this query worse
    stored["metrics"]["nDCG@10"] -= 0.01
    path.write_text(json.dumps(stored))
    _cpu(monkeypatch, {"avx2", "avx512_bf16"})
    with pytest.raises(Disagreement, match=rf"against {stored['metrics']['nDCG@10']:.4f} .*tolerance 0.002.*{qid}"):
        run_bench(cfg, tmp_path, log=lambda _: None, retime=True, rerank=_counting(cfg, ds, requests[:5], []))
    assert json.loads(path.read_text()) == stored and path.with_suffix(".disagree.json").is_file()


def test_a_stopped_cell_does_not_resume_in_another_dtype(tmp_path) -> None:
    """Queries stored in bf16 (an AMX machine) and the rest computed in fp32 (an AVX2 one) would make one
    cell's nDCG@10 out of two computations: the resume stops, names both dtypes, and stores nothing."""
    from rankwise.bench.resume import MixedDtypes, rerank_resumably
    from rankwise.pipeline import RunResult
    from rankwise.types import Candidate, Query, Ranking, Request, Usage

    requests = [Request(Query(q, "text"), [Candidate("a", "x"), Candidate("b", "y")]) for q in ("1", "2", "3")]

    def rerank_in(dtype, stop_after_block: int | None = None):
        blocks = []

        def rerank(reqs, top_k):
            blocks.append(reqs)
            if stop_after_block is not None and len(blocks) > stop_after_block:
                raise RuntimeError("stopped")
            return RunResult({r.query.qid: Ranking.from_scores(r.query, r.candidates, [1.0, 0.0],
                                                               Usage(calls=1, dtype=dtype)) for r in reqs})
        return rerank

    partial = tmp_path / "cell.partial.json"
    cpu = {"cpu": "Test CPU", "cpu_class": "AMX"}
    with pytest.raises(RuntimeError):  # stopped after its first block (one query), computed in bf16
        rerank_resumably(rerank_in("bfloat16", stop_after_block=1), requests, 2, partial, 2, cpu)
    stored = partial.read_text()
    assert len(json.loads(stored)["queries"]) == 1
    with pytest.raises(MixedDtypes, match="1 stored queries were computed in bfloat16, this machine computes float32"):
        rerank_resumably(rerank_in("float32"), requests, 2, partial, 2, cpu)
    assert partial.read_text() == stored
    done = rerank_resumably(rerank_in("bfloat16"), requests, 2, partial, 2, cpu)  # the same dtype resumes
    assert sorted(done["docids"]) == ["1", "2", "3"] and done["usage"].dtype == "bfloat16"


@pytest.mark.parametrize(("seconds_per_query", "blocks"), [
    (1.0, [1, 4, 4, 4, 4, 3]),  # fast: one query, then blocks of ``every``
    (100.0, [1, 3, 3, 3, 3, 3, 3, 1]),  # 300 s hold three queries
    (1000.0, [1] * 20),  # slower than a block: every query is stored as it finishes
])
def test_blocks_of_a_slow_cell_are_cut_to_minutes(tmp_path, seconds_per_query, blocks) -> None:
    from rankwise.bench.resume import rerank_resumably
    from rankwise.pipeline import RunResult
    from rankwise.types import Candidate, Query, Ranking, Request, Usage

    requests = [Request(Query(str(q), "text"), [Candidate("a", "x"), Candidate("b", "y")]) for q in range(20)]
    sizes, stored = [], []
    partial = tmp_path / "cell.partial.json"

    def rerank(reqs, top_k):
        sizes.append(len(reqs))
        stored.append(len(json.loads(partial.read_text())["queries"]) if partial.exists() else 0)
        return RunResult({r.query.qid: Ranking.from_scores(r.query, r.candidates, [1.0, 0.0], Usage(calls=1))
                          for r in reqs}, wall_seconds=seconds_per_query * len(reqs))

    done = rerank_resumably(rerank, requests, 2, partial, 4, {"cpu": "Test CPU", "cpu_class": "AVX2, no bf16"})
    assert sizes == blocks and stored == [sum(blocks[:i]) for i in range(len(blocks))]
    assert len(done["docids"]) == 20 and done["timings"][0]["seconds_per_query"] == seconds_per_query


def test_agreement_within_the_tolerance() -> None:
    def cell(mean: float, cpu: str) -> dict:
        return {"dataset": "d", "method": "m", "model": "x", "cpu": cpu, "cpu_class": cpu, "queries": 2,
                "metrics": {"nDCG@10": mean}, "per_query_metrics": {"1": {"nDCG@10": mean}, "2": {"nDCG@10": mean}},
                "top10": {"1": ["a"], "2": ["b"]},
                "timings": [{"cpu_class": cpu, "queries": 2, "seconds_per_query": 1}]}

    merged = agree(cell(0.5, "AMX"), cell(0.5015, "AVX2"))
    assert merged["metrics"]["nDCG@10"] == 0.5 and len(merged["timings"]) == 2
    with pytest.raises(Disagreement) as raised:
        agree(cell(0.5, "AMX"), cell(0.503, "AVX2"))
    assert "dtype" not in str(raised.value)
    with pytest.raises(Disagreement, match="bfloat16 there and float32 here"):  # the dtype moved it, say so
        agree(cell(0.5, "AMX") | {"dtype": "bfloat16"}, cell(0.503, "AVX2") | {"dtype": "float32"})


def _cell(dataset: str, method: str, model: str, values: list[float], top_k: int = 20) -> dict:
    per_query = {str(i): {"nDCG@10": v} for i, v in enumerate(values)}
    return {"dataset": dataset, "first_stage": "bm25", "method": method, "model": model, "top_k": top_k,
            "queries": len(values), "metrics": {"nDCG@10": sum(values) / len(values)}, "per_query_metrics": per_query,
            "cpu": "Test CPU (AMX)", "cpu_class": "AMX", "seconds_per_query": 2.0, "cache_hits": 0,
            "per_query": {"calls": 20.0, "computed_tokens": 4321.0},
            "timings": [{"cpu_class": "AMX", "queries": len(values), "seconds_per_query": 2.0}]}


def test_the_table_shows_intervals_tests_costs_and_the_cells_not_run_yet(tmp_path: Path) -> None:
    cfg = BenchConfig.from_dict({"datasets": ["dl19"], "models": ["a", "b"], "methods": ["pointwise.yes_no"]})
    cells = [_cell("dl19", "first stage", "", [0.0] * 20 + [1.0] * 20),
             _cell("dl19", "pointwise.yes_no", "a", [1.0] * 40),
             _cell("dl19", "pointwise.yes_no", "runs/sft", [0.0] * 20 + [1.0] * 20)]
    cells[1]["timings"][0] |= {"load": 2.3, "cores": 2, "other_cores": 0.05}  # its own 2 threads: not shared
    cells[2]["timings"][0] |= {"load": 8.4, "cores": 2}  # timed while other work shared the CPU (load only)
    names = [cell_path(tmp_path, cfg, "dl19", "bm25", None).name,
             cell_path(tmp_path, cfg, "dl19", "bm25", cfg.methods[0]).name, "trained.json"]
    (tmp_path / "cells").mkdir()
    for name, cell in zip(names, cells):
        (tmp_path / "cells" / name).write_text(json.dumps(cell))
    rows = headline_rows(cfg, tmp_path)["dl19"]
    assert [(r.method, r.model, r.cell is not None) for r in rows] == [
        ("BM25", "", True), ("pointwise.yes_no", "a", True), ("pointwise.yes_no", "b", False),
        ("pointwise.yes_no", "runs/sft", True)]
    table = headline_markdown({"dl19": rows}, "rankwise bench x.yaml --output out")
    assert "| BM25 |  | top-20 | 0.5000 [0.350, 0.650] |  | <0.001 |" in table
    assert ("| `pointwise.yes_no` | a | top-20 | 1.0000 [1.000, 1.000] | <0.001 | best | 20.0 | 4,321 | 2.00 | AMX "
            "| 40 |") in table
    assert "| `pointwise.yes_no` | b | top-20 | not run yet: `--datasets dl19 --models b --only pointwise.yes_no` |" \
        in table
    assert ("| `pointwise.yes_no` | runs/sft (trained) | top-20 | 0.5000 [0.350, 0.650] | 1.000 | <0.001 | 20.0 "
            "| 4,321 | 2.00 (busy: load 8.4) | AMX | 40 |") in table
    assert "1 cell(s) not finished." in table and "`rankwise bench x.yaml --output out`" in table
    partial = cell_path(tmp_path, cfg, "dl19", "bm25", cfg.methods[1]).with_suffix(".partial.json")
    partial.write_text(json.dumps({"queries": {"1": {}, "2": {}, "3": {}}, "timed": []}))
    again = headline_markdown(headline_rows(cfg, tmp_path), "rankwise bench x.yaml --output out")
    # a half-run cell (its stored queries may be committed) has no figures until it is done, only its progress
    part_way = "part-way (its stored queries are kept), resumes with `--datasets dl19 --models b"
    assert again == table.replace("not run yet: `--datasets dl19 --models b", part_way).replace(
        "1 cell(s) not finished.", "1 cell(s) not finished (1 part-way).")


def test_a_part_way_cell_keeps_its_own_row_beside_a_cell_not_run_yet(tmp_path: Path) -> None:
    cfg = BenchConfig.from_dict({"datasets": ["dl19"], "models": ["a", "b"], "methods": ["pointwise.yes_no"]})
    (tmp_path / "cells").mkdir()
    cell_path(tmp_path, cfg, "dl19", "bm25", None).write_text(json.dumps(_cell("dl19", "first stage", "", [0.5] * 4)))
    partial = cell_path(tmp_path, cfg, "dl19", "bm25", cfg.methods[0]).with_suffix(".partial.json")
    partial.write_text(json.dumps({"queries": {"1": {}, "2": {}}, "timed": []}))
    table = headline_markdown(headline_rows(cfg, tmp_path), "rankwise bench x.yaml --output out")
    assert ("| `pointwise.yes_no` | a | top-20 | part-way (its stored queries are kept), resumes with "
            "`--datasets dl19 --models a") in table
    assert "| `pointwise.yes_no` | b | top-20 | not run yet: `--datasets dl19 --models b" in table
    assert "2 cell(s) not finished (1 part-way)." in table


def test_markers_are_replaced_and_required() -> None:
    text = "a\n<!-- headline:start -->\nold\n<!-- headline:end -->\nb"
    assert replace_marked(text, "new\n") == "a\n<!-- headline:start -->\nnew\n<!-- headline:end -->\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_marked("no markers", "x")


def test_the_readme_table_is_what_the_committed_cells_give() -> None:
    """A fresh clone rebuilds the README's table from benchmarks/headline/cells without running a model."""
    spec = importlib.util.spec_from_file_location("headline_script", ROOT / "benchmarks" / "headline.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert replace_marked(readme, script.generate(figure=None)) == readme, "run python benchmarks/headline.py"


def test_entries_set_their_own_depth_query_subset_and_datasets() -> None:
    cfg = BenchConfig.from_dict({"datasets": ["dl19", "dl20", "scifact"], "top_k": 20, "models": ["a"], "methods": [
        {"method": "embedding.cosine", "model": "m", "top_k": 100},
        {"method": "pairwise.allpairs", "max_queries": 10, "datasets": ["dl19", "dl20"]},
        {"method": "pointwise.yes_no", "datasets": ["dl19"]}, {"method": "pointwise.yes_no", "datasets": ["scifact"]}]})
    assert [(m.top_k, m.max_queries, m.datasets) for m in cfg.methods] == [
        (100, None, ()), (20, 10, ("dl19", "dl20")), (20, None, ("dl19",)), (20, None, ("scifact",))]
    assert [cfg.runs_on(m, "scifact") for m in cfg.methods] == [True, False, False, True]
    with pytest.raises(InputError, match="pointwise.yes_no on a is listed twice for dl19"):
        BenchConfig.from_dict({"datasets": ["dl19"], "models": ["a"],
                               "methods": ["pointwise.yes_no", {"method": "pointwise.yes_no", "datasets": ["dl19"]}]})


def test_only_runs_the_named_methods(dl19, five, tmp_path, monkeypatch) -> None:
    ds, requests = five
    _cpu(monkeypatch, {"avx2"})
    cfg = _config(dl19, methods=["pointwise.graded", "pointwise.yes_no"])
    seen: list[str] = []
    cells = run_bench(cfg, tmp_path, log=lambda _: None, only=("none",),
                      rerank=_counting(cfg, ds, requests[:5], seen))
    assert [c["method"] for c in cells] == ["first stage"] and seen == []
    cells = run_bench(cfg, tmp_path, log=lambda _: None, only=("pointwise.yes_no",),
                      rerank=_counting(cfg, ds, requests[:5], seen))
    assert [c["method"] for c in cells] == ["first stage", "pointwise.yes_no"] and len(seen) == 5


def test_seconds_are_flagged_when_other_processes_shared_the_cpu() -> None:
    from rankwise.bench.headline import _seconds
    timing = {"seconds_per_query": 2.0, "load": 2.4, "cores": 2}
    assert _seconds(timing | {"other_cores": 0.1}) == "2.00"  # a load above the cores from our own threads
    assert _seconds(timing | {"other_cores": 0.9}) == "2.00 (shared: others busy 0.9 cores)"
    assert _seconds(timing) == "2.00 (busy: load 2.4)"  # cells timed before other_cores was measured
