"""`rankwise bench`: the matrix config, the robustness probes, the runner (oracle) and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.bench import (
    BenchConfig,
    in_process,
    markdown_table,
    pareto_front,
    plot,
    robustness_table,
    run_bench,
    summary_table,
)
from rankwise.bench.report import cold_front, cpus_that_timed, p_against_first_stage
from rankwise.bench.robustness import (
    ADVERSARIAL_DOCID,
    adversary_ranks,
    shuffled,
    with_adversary,
)
from rankwise.bench.runner import FIRST_STAGE, WARM_UP, first_stage_requests
from rankwise.cli import main
from rankwise.data import load_dataset
from rankwise.data.selection import qid_key
from rankwise.errors import InputError
from rankwise.methods import build_method
from rankwise.pipeline import Backends
from tests.oracle import oracle_from_qrels
from tests.oracle_compare import compare_oracle


def test_config_crosses_llm_methods_with_models() -> None:
    cfg = BenchConfig.from_dict({"datasets": ["dl19"], "models": ["a", "b"], "top_k": 10,
                                 "methods": ["pointwise.yes_no", {"method": "setwise.heapsort", "model": "c",
                                                                  "options": {"k": 3}}],
                                 "robustness": {"shuffles": 3, "adversarial": True}})
    assert [(m.method, m.model) for m in cfg.methods] == [("pointwise.yes_no", "a"), ("pointwise.yes_no", "b"),
                                                          ("setwise.heapsort", "c")]
    assert cfg.methods[2].options == {"k": 3} and cfg.shuffles == 3 and cfg.adversarial
    assert cfg.measures[0] == "nDCG@10" and cfg.first_stages == ("bm25",)


@pytest.mark.parametrize("raw, message", [
    ([], "must be a mapping"),
    ({"datasets": ["dl19"], "methods": ["pointwise.yes_no"], "colour": 1}, "unknown field(s) colour"),
    ({"datasets": ["dl19"], "methods": ["pointwise.yes_no"]}, "methods[0]: pointwise.yes_no needs a 'model'"),
    ({"datasets": ["dl19"], "methods": ["pointwise.nope"], "models": ["m"]}, "methods[0]: unknown method"),
    ({"datasets": ["dl19"], "methods": ["pointwise.yes_no"], "models": ["m"], "top_k": 0}, "'top_k' must be"),
    ({"datasets": [], "methods": ["pointwise.yes_no"]}, "'datasets' must be"),
    ({"datasets": ["dl19"], "methods": [{"method": "crossencoder", "model": "m", "repeats": 0}]},
     "'methods[0].repeats' must be a positive integer"),
    ({"datasets": ["dl19"], "methods": [{"method": "crossencoder", "model": "m", "repeats": 3}]},
     "methods[0]: repeats times the cell again, and with the output cache on"),
])
def test_config_errors_name_the_field(raw, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        BenchConfig.from_dict(raw, "cfg.yaml")


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [dl19\nmethods: x\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: not valid YAML"):
        BenchConfig.from_file(bad)
    with pytest.raises(InputError, match="no such benchmark config"):
        BenchConfig.from_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples").glob("bench-*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_bench_config_parses(path: Path) -> None:
    config = BenchConfig.from_file(path)
    assert config.datasets and config.methods


def test_overrides_replace_top_level_fields_and_are_checked() -> None:
    matrix = Path(__file__).resolve().parents[2] / "examples" / "bench-matrix.yaml"
    full = BenchConfig.from_file(matrix)
    small = BenchConfig.from_file(matrix, {"datasets": ["dl19"], "models": ["qwen2.5-0.5b"], "max_queries": 2,
                                           "top_k": None})
    assert small.datasets == ("dl19",) and small.max_queries == 2 and small.top_k == full.top_k
    assert {m.model for m in small.methods} == {"qwen2.5-0.5b", "minilm-l6"}  # pinned models stay
    assert {m.name for m in small.methods} == {m.name for m in full.methods}
    with pytest.raises(InputError, match="'max_queries' must be a positive integer"):
        BenchConfig.from_file(matrix, {"max_queries": 0})


def _cell(dataset: str, method: str, ndcg: float, seconds: float = 1.0, model: str = "m") -> dict:
    cost = {"seconds_per_query": seconds, "cache_hits": 0,
            "per_query": {"calls": 1.0, "prompt_tokens": 100 * seconds, "completion_tokens": 0.0}}
    return {"dataset": dataset, "first_stage": "bm25", "method": method, "model": model,
            "metrics": {"nDCG@10": ndcg}} | ({} if method == "first stage" else cost)


def test_summary_table_ranks_methods_by_their_mean_change_across_datasets() -> None:
    cells = [_cell("dl19", "first stage", 0.50, model=""), _cell("dl19", "a", 0.40), _cell("dl19", "b", 0.60, 3.0),
             _cell("dl20", "first stage", 0.30, model=""), _cell("dl20", "a", 0.35),
             {**_cell("dl20", "b", 0.0), "error": "RuntimeError (at x.py:1)"}]
    lines = summary_table(cells).splitlines()
    assert lines[0].startswith("| method | model | dl19 nDCG@10 (change) | dl20 nDCG@10 (change) | mean change |")
    assert lines[2] == "| first stage |  | 0.5000 | 0.3000 |  |  |  |  |"
    # b: +0.10 on dl19, failed on dl20 (left out of its mean); a: -0.10 and +0.05, mean -0.025
    assert lines[3] == "| b | m | 0.6000 (+0.100) | failed | +0.100 | 1 of 1 | 3.00 | 300 |"
    assert lines[4] == "| a | m | 0.4000 (-0.100) | 0.3500 (+0.050) | -0.025 | 1 of 2 | 1.00 | 100 |"
    assert summary_table(cells[:3]) == ""  # one dataset: nothing to summarise


def test_robustness_table_pools_the_probes_across_datasets() -> None:
    def probed(dataset: str, ndcg: float, shuffled: float, std: float, ranks: list[int], flagged: int = 0) -> dict:
        return _cell(dataset, "a", ndcg) | {
            "shuffles": {"mean": shuffled, "std": std},
            "adversarial": {"ranks": ranks, "ndcg10": ndcg - 0.1, "flagged": flagged}}

    cells = [_cell("dl19", "first stage", 0.5, model=""), probed("dl19", 0.6, 0.5, 0.02, [1, 4, 12]),
             _cell("dl19", "plain", 0.55),
             _cell("dl20", "first stage", 0.3, model=""), probed("dl20", 0.4, 0.2, 0.04, [1, 2, 3], flagged=3)]
    lines = robustness_table(cells).splitlines()
    assert lines[0].startswith("| method | model | nDCG@10 (mean) | shuffled mean | change when shuffled |")
    # shuffling costs 0.15 on average; the adversary ranks first in 2 of 6 queries, in the top 10 in 5,
    # at rank (1 + 4 + 12 + 1 + 2 + 3) / 6 on average
    assert lines[2] == "| a | m | 0.5000 | 0.3500 | -0.150 | 0.0300 | 2 of 6 | 5 of 6 | 3.8 | 0.4000 | 3 |"
    assert len(lines) == 3  # "plain" measured no probe
    assert robustness_table(cells[:3]) == "" and robustness_table([_cell("dl19", "plain", 0.5),
                                                                  _cell("dl20", "plain", 0.5)]) == ""


def _per_query(cell: dict, values: list[float]) -> dict:
    return cell | {"per_query_metrics": {f"q{i}": {"nDCG@10": v} for i, v in enumerate(values)}}


def test_methods_are_tested_against_the_first_stage_query_by_query() -> None:
    ten = 10
    base = [0.2] * ten
    cells = [_per_query(_cell("dl19", "first stage", 0.2, model=""), base),
             _per_query(_cell("dl19", "lift", 0.3), [0.3] * ten),            # better on every query
             _per_query(_cell("dl19", "mixed", 0.2), [0.1, 0.3] * (ten // 2)),  # as many up as down
             _cell("dl19", "old", 0.25),                                       # a cell without per-query values
             _per_query(_cell("dl20", "first stage", 0.2, model=""), base),
             _per_query(_cell("dl20", "lift", 0.2), base)]
    lift, mixed, old = (p_against_first_stage(c, cells[0]) for c in cells[1:4])
    assert lift == pytest.approx(2 / 2**ten, abs=1e-3)  # only the all-plus and all-minus sign flips reach it
    assert mixed == 1.0 and old is None
    summary = summary_table(cells)
    assert "| lift | m | 0.3000 (+0.100†) | 0.2000 (+0.000) |" in summary
    assert "| mixed | m | 0.2000 (+0.000) |" in summary and "| old | m | 0.2500 (+0.050) |" in summary
    table = markdown_table(cells).splitlines()
    assert table[0].startswith("| dataset | first stage | method | model | nDCG@10 | p vs first stage |")
    assert table[2].startswith("| dl19 | bm25 | first stage |  | 0.2000 |  |")
    assert table[3].startswith("| dl19 | bm25 | lift | m | 0.3000 | 0.003 |")
    assert table[4].startswith("| dl19 | bm25 | mixed | m | 0.2000 | 1.000 |")
    assert table[5].startswith("| dl19 | bm25 | old | m | 0.2500 |  |")


def test_pareto_front_by_hand() -> None:
    #         cheap+bad  dominated  cheap+good  dear+best  dear+worse
    points = [(1, 0.3), (2, 0.2), (1.5, 0.5), (10, 0.7), (12, 0.6)]
    assert pareto_front(points) == [0, 2, 3]


def test_a_cell_that_read_the_cache_stays_off_the_front(tmp_path: Path) -> None:
    def cell(method: str, seconds: float, ndcg: float, hits: int) -> dict:
        return {"dataset": "dl19", "first_stage": "bm25", "top_k": 10, "queries": 3, "method": method,
                "model": "m", "seconds_per_query": seconds, "per_query": {"prompt_tokens": 0 if hits else 100},
                "metrics": {"nDCG@10": ndcg}, "cache_hits": hits}

    cells = [cell("cold.slow", 5.0, 0.7, 0), cell("cold.fast", 1.0, 0.5, 0), cell("warm.free", 0.01, 0.6, 30)]
    points = [(c["seconds_per_query"], c["metrics"]["nDCG@10"]) for c in cells]
    assert pareto_front(points) == [2, 0]  # counted at its warm cost it would push cold.fast off
    assert cold_front(cells, points) == [1, 0]
    assert plot(cells, tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"  # zero tokens: no log(0)


@pytest.fixture(scope="module")
def dl19_requests(dl19):
    ds = load_dataset(str(dl19))
    judged = [r for r in ds.requests("bm25", top_k=100) if r.query.qid in ds.qrels]
    requests = sorted(judged, key=lambda r: qid_key(r.query.qid))[:3]  # what bench's max_queries selects
    return ds, requests


def test_the_first_stage_lists_the_judged_queries_in_qid_order(dl19, tmp_path: Path) -> None:
    """So ``max_queries`` picks the same queries from any run of a collection, whatever its file order."""
    ds = load_dataset(str(dl19))
    qids = [r.query.qid for r in first_stage_requests(ds, "bm25", 10, tmp_path)]
    assert qids == sorted(ds.judged_queries(), key=qid_key)
    assert [r.query.qid for r in ds.requests("bm25", top_k=10) if r.query.qid in ds.qrels] != qids  # file order


def test_shuffles_permute_the_head_only(dl19_requests) -> None:
    _, requests = dl19_requests
    a, b = shuffled(requests, 10, seed=1), shuffled(requests, 10, seed=1)
    assert a == b  # seeded
    for original, mixed in zip(requests, a):
        assert sorted(c.docid for c in mixed.candidates[:10]) == sorted(c.docid for c in original.candidates[:10])
        assert mixed.candidates[10:] == original.candidates[10:]
        assert [c.docid for c in mixed.candidates[:10]] != [c.docid for c in original.candidates[:10]]


def test_adversary_is_injected_once_into_the_head(dl19_requests) -> None:
    _, requests = dl19_requests
    for original, attacked in zip(requests, with_adversary(requests, 10)):
        ids = [c.docid for c in attacked.candidates]
        assert ids.count(ADVERSARIAL_DOCID) == 1 and ids.index(ADVERSARIAL_DOCID) <= 10
        assert [d for d in ids if d != ADVERSARIAL_DOCID] == [c.docid for c in original.candidates]
        assert original.query.text in attacked.candidates[ids.index(ADVERSARIAL_DOCID)].text
    assert adversary_ranks({"q": {"a": 3.0, ADVERSARIAL_DOCID: 2.0, "b": 1.0}}) == [2]


class OracleBackends(Backends):
    """Every method on a judge that answers from the qrels (tests the runner, not a model)."""

    def __init__(self, requests, qrels):
        super().__init__(cache=False)
        self.oracle = oracle_from_qrels(requests, qrels)
        self.built = 0

    def reranker(self, stage):
        self.built += 1
        return build_method(stage.method, self.oracle, **stage.options), 0.0


def test_runner_writes_cells_and_resumes(dl19, dl19_requests, tmp_path: Path) -> None:
    ds, requests = dl19_requests
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": ["pointwise.yes_no", "pointwise.graded"],
                                 "robustness": {"shuffles": 2, "adversarial": True}})
    backends = OracleBackends(requests, ds.qrels)
    cells = run_bench(cfg, tmp_path, log=lambda _: None, rerank=in_process(cfg, backends))
    assert [c["method"] for c in cells] == ["first stage", "pointwise.yes_no", "pointwise.graded"]
    first, yes_no = cells[0], cells[1]
    assert yes_no["metrics"]["nDCG@10"] > first["metrics"]["nDCG@10"]  # a perfect judge beats BM25
    assert yes_no["per_query"]["calls"] == 10 and yes_no["queries"] == 3 and yes_no["coverage"]["averaged_over"] == 3
    # per-query values whose mean is the cell's nDCG@10, for the paired test against the first stage
    assert set(yes_no["per_query_metrics"]) == {r.query.qid for r in requests}
    assert sum(v["nDCG@10"] for v in yes_no["per_query_metrics"].values()) / 3 == pytest.approx(
        yes_no["metrics"]["nDCG@10"])
    assert set(first["per_query_metrics"]) == set(yes_no["per_query_metrics"])
    # a pointwise judge ignores the input order: every shuffle scores the same
    assert yes_no["shuffles"]["std"] == pytest.approx(0.0) and len(yes_no["shuffles"]["ndcg10"]) == 2
    # the oracle grades the adversary 0: it never reaches the top
    assert yes_no["adversarial"]["top1"] == 0.0 and len(yes_no["adversarial"]["ranks"]) == 3
    assert len(list((tmp_path / "cells").glob("*.json"))) == 3
    built = backends.built  # each cell: a warm-up, the run, 2 shuffles and the adversary
    assert built == 2 * 5
    again = run_bench(cfg, tmp_path, log=lambda _: None, rerank=in_process(cfg, backends))
    assert backends.built == built and again == cells  # resumed: nothing ran twice
    table = markdown_table(cells)
    assert "| pointwise.graded | oracle |" in table and "± 0.0000" in table
    png = plot(cells, tmp_path / "plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_guarded_cell_counts_the_demoted_adversaries(dl19, dl19_requests, tmp_path: Path) -> None:
    ds, requests = dl19_requests
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": [{"method": "pointwise.yes_no", "label": "guarded",
                                              "options": {"guard": True}}],
                                 "robustness": {"adversarial": True}})
    cells = run_bench(cfg, tmp_path, log=lambda _: None, rerank=in_process(cfg, OracleBackends(requests, ds.qrels)))
    guarded = cells[1]
    assert guarded["flagged"] == 0  # no real DL19 passage is flagged
    assert guarded["adversarial"]["flagged"] == 3 and guarded["adversarial"]["ranks"] == [11, 11, 11]
    # top-1, top-10 and mean rank: last of the 11 candidates every time
    assert "| 0% | 0% | 11.0 |" in markdown_table(cells)


class BiasedCompareBackends(Backends):
    """A pairwise judge that always answers "Passage A" (pure position bias)."""

    def __init__(self, requests, qrels):
        super().__init__(cache=False)
        self.judge = compare_oracle(requests, qrels, bias=100.0)

    def reranker(self, stage):
        return build_method(stage.method, self.judge, **stage.options), 0.0


def test_the_table_shows_how_often_both_orders_agree(dl19, dl19_requests, tmp_path: Path) -> None:
    ds, requests = dl19_requests
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": ["pairwise.sliding", "setwise.heapsort"]})
    cells = run_bench(cfg, tmp_path, log=lambda _: None,
                      rerank=in_process(cfg, BiasedCompareBackends(requests, ds.qrels)))
    sliding, setwise = cells[1], cells[2]
    assert sliding["comparisons"] == sliding["inconsistent"] == 3 * 9  # one pass: nothing moves, pairs reused
    assert setwise["comparisons"] == 0  # one order per prompt: nothing to agree on
    table = markdown_table(cells)
    assert table.splitlines()[0].endswith("| both orders agree |")
    assert "| 0% of 27 |" in table and table.splitlines()[-1].endswith("| 0 |  |")




def test_cli_bench_bad_config(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("datasets: [dl19]\nmethods: [pointwise.yes_no]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(cfg), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "methods[0]: pointwise.yes_no needs a 'model'" in capsys.readouterr().err


def test_cli_bench_models_that_no_entry_runs_on_are_an_error(tmp_path: Path, capsys) -> None:
    """An entry that names its own model keeps it under --models: asking for another model there would run
    nothing new, so the command says so before any model loads."""
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("datasets: [dl19, scifact]\nmodels: [m]\nmethods:\n  - {method: pointwise.yes_no, datasets: [dl19]}\n"
                   "  - {method: pointwise.yes_no, model: m, datasets: [scifact]}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(cfg), "--models", "runs/x", "--datasets", "scifact", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--models runs/x: no selected method runs on it" in err and "pointwise.yes_no (m)" in err
    assert not (tmp_path / "out").exists()


def test_cli_bench_names_a_bad_override(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("datasets: [dl19]\nmodels: [m]\nmethods: [pointwise.yes_no]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(cfg), "--top-k", "0", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "'top_k' must be a positive integer (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_config_needs_labels_for_variants() -> None:
    entry = {"method": "setwise.heapsort", "model": "m"}
    with pytest.raises(InputError, match="listed twice"):
        BenchConfig.from_dict({"datasets": ["dl19"], "methods": [entry, entry | {"options": {"k": 3}}]})
    cfg = BenchConfig.from_dict({"datasets": ["dl19"], "methods": [entry, entry | {"label": "setwise.k3"}]})
    assert [m.name for m in cfg.methods] == ["setwise.heapsort", "setwise.k3"]


def test_a_peer_cell_runs_through_the_peer_and_sits_beside_ours(dl19, dl19_requests, tmp_path: Path,
                                                                  monkeypatch) -> None:
    from rankwise.bench import peer_table, peers
    from rankwise.types import Usage

    ds, requests = dl19_requests
    seen, asked = [], []

    def reversed_head(peer, method, model, options):  # a stand-in peer: reverses the head it is given
        seen.append((peer, method, model, options))

        def rerank(request, top_k):
            asked.append(request.query.qid)
            return peers._ranking(request, request.candidates[:top_k],
                                  [c.docid for c in request.candidates[:top_k]][::-1], Usage(calls=top_k, dtype="float32"))
        return rerank

    monkeypatch.setattr(peers, "peer_reranker", reversed_head)
    monkeypatch.setitem(peers.PEERS, "stand-in", ("json", ("pointwise.graded",)))
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": ["pointwise.graded",
                                             {"method": "pointwise.graded", "peer": "stand-in", "repeats": 3}],
                                 "cache": False})
    cells = run_bench(cfg, tmp_path, log=lambda _: None, rerank=in_process(cfg, OracleBackends(requests, ds.qrels)))
    ours, theirs = cells[1], cells[2]
    assert seen == [("stand-in", "pointwise.graded", "oracle", {})]  # loaded once
    # warmed up once, untimed and uncounted, like rankwise's own methods; then timed 3 times, the median kept
    assert asked == [WARM_UP.query.qid] + [r.query.qid for r in requests] * 3
    runs = theirs["seconds_per_query_runs"]
    assert len(runs) == 3 and theirs["seconds_per_query"] == sorted(runs)[1] and "seconds_per_query_runs" not in ours
    assert theirs["method"] == "pointwise.graded@stand-in" and theirs["peer"] == "stand-in"
    assert theirs["per_query"]["calls"] == 10 and theirs["metrics"]["nDCG@10"] < ours["metrics"]["nDCG@10"]
    table = peer_table(cells)
    assert table.count("\n") == 3 and "| pointwise.graded | oracle | stand-in |" in table
    assert "(float32, median of 3) |" in table
    assert peer_table(cells[:2]) == ""
    # where the peer's model is served (base_url) does not change the method: it still pairs with ours
    served = dict(theirs, options={"base_url": "http://127.0.0.1:8099/v1"})
    assert peer_table([cells[0], ours, served]) == table


def test_a_failing_peer_is_a_failed_cell_not_a_crash(dl19, dl19_requests, tmp_path: Path, monkeypatch) -> None:
    from rankwise.bench import peers
    from rankwise.types import Usage

    ds, requests = dl19_requests

    def broken(peer, method, model, options):
        def rerank(request, top_k):
            raise AttributeError("BatchEncoding has no attribute shape")  # what llm-rankers' listwise hits
        return rerank

    monkeypatch.setattr(peers, "peer_reranker", broken)
    monkeypatch.setitem(peers.PEERS, "stand-in", ("json", ("pointwise.graded",)))
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": ["pointwise.graded", {"method": "pointwise.graded", "peer": "stand-in"}]})
    logged = []
    cells = run_bench(cfg, tmp_path, log=logged.append, rerank=in_process(cfg, OracleBackends(requests, ds.qrels)))
    assert cells[2]["error"].startswith("AttributeError: BatchEncoding has no attribute shape (at unit/test_bench.py:")
    assert any("failed inside the peer" in line for line in logged)
    assert "| pointwise.graded@stand-in | oracle | failed: AttributeError" in markdown_table(cells)
    plot(cells, tmp_path / "plot.png")  # the failed cell has no point
    monkeypatch.undo()
    monkeypatch.setattr(peers, "peer_reranker", lambda *a: (lambda request, top_k: peers._ranking(
        request, request.candidates[:top_k], [], Usage())))
    monkeypatch.setitem(peers.PEERS, "stand-in", ("json", ("pointwise.graded",)))
    again = run_bench(cfg, tmp_path, log=lambda _: None, rerank=in_process(cfg, OracleBackends(requests, ds.qrels)))
    assert "error" not in again[2]  # retried on the re-run


def test_a_failing_rankwise_cell_is_recorded_and_the_matrix_goes_on(dl19, dl19_requests, tmp_path: Path) -> None:
    """The oracle has no continuation_logprobs (an optional capability): qlm fails, graded still runs."""
    ds, requests = dl19_requests
    cfg = BenchConfig.from_dict({"datasets": [str(dl19)], "top_k": 10, "max_queries": 3, "models": ["oracle"],
                                 "methods": ["pointwise.qlm", "pointwise.graded"]})
    logged: list[str] = []
    cells = run_bench(cfg, tmp_path, log=logged.append, rerank=in_process(cfg, OracleBackends(requests, ds.qrels)))
    failed, graded = cells[1], cells[2]
    assert failed["error"].startswith("ModelError: pointwise.qlm (query likelihood) needs a backend with "
                                      "ContinuationBackend")
    assert "metrics" in graded and any("failed in rankwise" in line for line in logged)
    assert "| pointwise.qlm | oracle | failed: ModelError" in markdown_table(cells)


def test_cli_bench_exits_1_when_a_cell_failed(dl19, tmp_path: Path, capsys, monkeypatch) -> None:
    from rankwise.bench import runner

    def broken(config, requests, qrels, *args):
        raise RuntimeError("engine fell over")

    monkeypatch.setattr(runner, "_run_cell", lambda config, rerank, requests, qrels: broken(config, requests, qrels))
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"datasets: [{dl19}]\ntop_k: 5\nmax_queries: 2\nmethods: [{{method: embedding.cosine, model: minilm-l6}}]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(cfg), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    assert "1 cell(s) failed" in capsys.readouterr().err and (tmp_path / "out" / "results.md").exists()


def test_labels_of_coinciding_points_do_not_overlap() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rankwise.bench.report import _annotate_apart

    fig, ax = plt.subplots()
    ax.scatter([1.0, 1.0, 5.0], [0.5, 0.5, 0.2])
    _annotate_apart(ax, ["listwise.window", "listwise.full", "alone"], [(1.0, 0.5), (1.0, 0.5), (5.0, 0.2)], 7)
    offsets = {a.get_text(): a.xyann for a in ax.texts}
    assert offsets["alone"] == (4, 3.0)  # nothing in its way: up and to the right
    assert offsets["listwise.window"][1] != offsets["listwise.full"][1]  # one moved a line
    assert abs(offsets["listwise.window"][1] - offsets["listwise.full"][1]) == pytest.approx(1.25 * 7)
    plt.close(fig)


def test_the_readme_matrix_is_a_valid_config() -> None:
    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("A benchmark matrix (`rankwise bench`")[1].split("```yaml\n")[1].split("```")[0]
    cfg = BenchConfig.from_dict(yaml.safe_load(block), "README.md")
    assert [m.name for m in cfg.methods] == ["pointwise.yes_no", "setwise-k10", "setwise.heapsort@llm-rankers",
                                             "crossencoder", "embedding.cosine", "pairwise.allpairs"]
    assert cfg.methods[3].repeats == 5 and cfg.shuffles == 3 and cfg.adversarial and not cfg.cache
    assert cfg.methods[4].top_k == 100 and cfg.methods[5].max_queries == 10 and cfg.checkpoint == 5


def test_results_header_names_the_cpus_that_timed_the_cells_not_the_first_stages():
    cells = [{"method": FIRST_STAGE, "cpu": "Intel Xeon (AMX)"},
             {"method": "listwise.full", "cpu": "AMD EPYC (AVX2, no bf16)"},
             {"method": "pointwise.yes_no", "cpu": "Intel Xeon (AMX)"},
             {"method": "pointwise.yes_no", "cpu": "AMD EPYC (AVX2, no bf16)"},
             {"method": "setwise.heapsort", "cpu": "Other", "error": "out of memory"}]
    assert cpus_that_timed(cells) == "AMD EPYC (AVX2, no bf16); Intel Xeon (AMX)"
    retimed = {"method": "embedding.cosine", "cpu": "Intel Xeon (AMX)",
               "timings": [{"cpu": "Intel Xeon (AMX)"}, {"cpu": "AMD EPYC (AVX2, no bf16)"}]}
    assert cpus_that_timed([cells[0], retimed]) == "Intel Xeon (AMX); AMD EPYC (AVX2, no bf16)"
    assert cpus_that_timed(cells[:1]) == "Intel Xeon (AMX)"
