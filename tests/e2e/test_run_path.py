"""One run path: the CLI, a one-stage pipeline file, a bench cell, the HTTP service and (slow) Ray give the
same rankings and the same usage; TREC runs carry the method's scores; queries batched together equal one at
a time; the smallest API; listing methods imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rankwise import Reranker
from rankwise.data import load_dataset, read_run, write_candidates_jsonl
from rankwise.errors import InputError
from rankwise.pipeline import Backends, FirstStage, Rerank, load_reranker, run
from rankwise.types import Ranking, Request, Usage

from tiny_lm import save_tiny_model

METHOD, TOP_K, QUERIES = "pointwise.yes_no", 5, 3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    save_tiny_model(path)
    return path


@pytest.fixture(scope="module")
def requests(dl19) -> list[Request]:
    ds = load_dataset(str(dl19))
    return [r for r in ds.requests("bm25", top_k=8) if r.query.qid in ds.qrels][:QUERIES]


def _stage(model: Path, method: str = METHOD) -> Rerank:
    return Rerank(method, str(model), top_k=TOP_K, engine="transformers", dtype="float32")


def _counters(usage: Usage | dict) -> dict:
    usage = Usage.from_dict(usage) if isinstance(usage, dict) else usage
    return usage.counters()


def _order(run: dict) -> dict:
    return {qid: list(docs) for qid, docs in run.items()}


def test_cli_pipeline_file_bench_and_service_take_the_one_run_path(tiny_dir, requests, tmp_path):
    reference = run(_stage(tiny_dir), requests, cache=False)
    candidates = tmp_path / "candidates.jsonl"
    write_candidates_jsonl(requests, candidates)

    from rankwise.cli import main

    cli_run, cli_usage = tmp_path / "cli.trec", tmp_path / "cli.json"
    main(["rerank", "--method", METHOD, "--model", str(tiny_dir), "--engine", "transformers", "--dtype",
          "float32", "--top-k", str(TOP_K), "--candidates", str(candidates), "--output", str(cli_run),
          "--usage", str(cli_usage), "--no-cache"])
    assert read_run(cli_run) == reference.run()
    assert _counters(json.loads(cli_usage.read_text())) == _counters(reference.usage)

    pipeline_file = tmp_path / "one-stage.yaml"
    _stage(tiny_dir).to_yaml(pipeline_file)
    yaml_run, yaml_usage = tmp_path / "yaml.trec", tmp_path / "yaml.json"
    main(["run", str(pipeline_file), "--candidates", str(candidates), "--output", str(yaml_run),
          "--usage", str(yaml_usage), "--no-cache"])
    assert read_run(yaml_run) == reference.run()
    assert _counters(json.loads(yaml_usage.read_text())) == _counters(reference.usage)

    from rankwise.bench.runner import in_process
    from rankwise.bench.config import BenchConfig

    config = BenchConfig.from_dict({"datasets": ["dl19"], "top_k": TOP_K, "models": [str(tiny_dir)],
                                    "methods": [METHOD], "backend": {"engine": "transformers", "dtype": "float32"},
                                    "cache": False})
    cell = in_process(config, Backends(cache=False))(config.methods[0], requests, TOP_K)
    assert _order(cell.run()) == _order(reference.run()) and cell.run() == reference.run()
    assert _counters(cell.usage) == _counters(reference.usage)

    from fastapi.testclient import TestClient

    from rankwise.serve import create_app

    served = load_reranker(METHOD, str(tiny_dir), engine="transformers", dtype="float32", cache=False)
    with TestClient(create_app(served.backend, METHOD)) as client:
        for request in requests:
            texts = [c.content for c in request.candidates[:TOP_K]]
            body = client.post("/v1/rerank", json={"query": request.query.text, "documents": texts}).json()
            expected = reference.rankings[request.query.qid]
            assert [request.candidates[r["index"]].docid for r in body["results"]] == expected.docids[:TOP_K]
            assert [r["relevance_score"] for r in body["results"]] == pytest.approx(expected.scores[:TOP_K], abs=0)
            assert body["usage"]["prompts"] == expected.usage.calls
            assert body["usage"]["computed_tokens"] == expected.usage.computed_tokens


def test_a_trec_run_carries_the_methods_scores_strictly_decreasing(tiny_dir, requests):
    result = run(_stage(tiny_dir), requests, cache=False)
    for qid, docs in result.run().items():
        scores = list(docs.values())
        ranking = result.rankings[qid]
        assert all(a > b for a, b in zip(scores, scores[1:]))
        assert scores[:TOP_K] == pytest.approx(ranking.scores[:TOP_K])  # P(yes), not n - rank
        assert all(0.0 < s < 1.0 for s in scores[:TOP_K])
    ranks = result.run(rank_scores=True)
    assert all(list(d.values()) == [float(len(d) - i) for i in range(len(d))] for d in ranks.values())
    assert _order(ranks) == _order(result.run())


def test_ties_keep_the_input_order_and_still_decrease():
    from rankwise.pipeline import RunResult
    from rankwise.types import Candidate, Query

    cands = tuple(Candidate(f"d{i}", "t") for i in range(3))
    result = RunResult(rankings={"q": Ranking(Query("q", "x"), cands, (0.5, 0.5, 0.5))})
    docs = result.run()["q"]
    assert list(docs) == ["d0", "d1", "d2"] and docs["d0"] > docs["d1"] > docs["d2"]


@pytest.mark.parametrize("method", ["pointwise.yes_no", "listwise.window", "setwise.heapsort"])
def test_queries_batched_together_equal_one_at_a_time(tiny_dir, requests, method):
    reranker = load_reranker(method, str(tiny_dir), engine="transformers", dtype="float32", cache=False)
    one = run(reranker % TOP_K, requests)
    together = run(reranker % TOP_K, requests, query_batch=QUERIES)
    for qid, ranking in one.rankings.items():
        assert together.rankings[qid].docids == ranking.docids
        assert together.rankings[qid].scores == ranking.scores
    assert together.usage.calls == one.usage.calls


def test_a_built_reranker_is_a_stage(tiny_dir, dl19):
    reranker = load_reranker(METHOD, str(tiny_dir), engine="transformers", dtype="float32", cache=False)
    pipeline = FirstStage("bm25") % 6 >> reranker % 3
    ds = load_dataset(str(dl19))
    queries = [r.query for r in ds.requests("bm25") if r.query.qid in ds.qrels][:2]
    result = run(pipeline, dataset=ds, queries=queries)
    assert all(len(r) == 6 for r in result.rankings.values())
    assert [s.path for s in result.stages] == ["1", "2"] and result.stages[1].usage.calls == 2 * 3
    assert "Rerank('pointwise.yes_no'" in str(pipeline)
    assert pipeline.to_dict()["pipeline"][1]["rerank"] == METHOD  # it saves as a pipeline file


def test_the_smallest_api_ranks_documents(tiny_dir):
    ranking = Reranker(METHOD, str(tiny_dir), engine="transformers", dtype="float32", cache=False).rank(
        "what do bees make", ["bees make honey", "the council met", "a recipe"])
    assert sorted(ranking.docids) == ["0", "1", "2"] and len(ranking.scores) == 3
    assert ranking.usage.calls == 3 and ranking.usage.engine == "transformers"


def test_wrong_options_name_the_valid_ones():
    with pytest.raises(InputError, match=r"pointwise.yes_no has no option 'windowsize' \(its options: prompt, "
                                         r"max_passage_tokens, guard\)"):
        Rerank(METHOD, "smollm2-135m", windowsize=3)
    with pytest.raises(InputError, match="option window_size takes a int, got 'x'"):
        Rerank("listwise.window", "smollm2-135m", window_size="x")


def test_methods_show_lists_declared_options(capsys):
    from rankwise.cli import main

    main(["methods", "show", "listwise.window"])
    out = capsys.readouterr().out
    for name in ("window_size", "step", "countdown", "guard"):
        assert name in out


def test_declared_defaults_are_the_methods_own():
    """An option's declared default is what the method uses when the option is not given."""
    import inspect

    from rankwise.methods.registry import method_infos

    classes = {}
    for info in method_infos():
        module = sys.modules[info.factory.__module__]
        cls = inspect.signature(info.factory).return_annotation
        cls = getattr(module, cls) if isinstance(cls, str) else cls
        params = {**inspect.signature(cls.__init__).parameters, **inspect.signature(info.factory).parameters}
        for option in info.options:
            assert option.name in params, (info.name, option.name)
            default = params[option.name].default
            if default is not inspect.Parameter.empty:
                assert default == option.default, (info.name, option.name)
        classes[info.name] = cls
    assert classes


def test_listing_methods_does_not_import_torch():
    code = ("import rankwise, sys; from rankwise.methods import method_names; method_names(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_requests_and_rankings_round_trip_as_json(requests):
    request = requests[0]
    assert Request.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    ranking = Ranking.from_scores(request.query, request.candidates, [float(i) for i in range(len(request.candidates))],
                                  Usage(calls=3, engine="x"))
    back = Ranking.from_dict(json.loads(json.dumps(ranking.to_dict())))
    assert back.docids == ranking.docids and back.scores == ranking.scores and back.usage.calls == 3


class _CountingEngine:
    """The engine, counting the calls that reach it."""

    def __init__(self, backend):
        self.backend, self.calls = backend, 0

    def __getattr__(self, item):
        return getattr(self.backend, item)

    def choice_logprobs(self, prompts, choices):
        self.calls += 1
        return self.backend.choice_logprobs(prompts, choices)


def test_pointwise_prompts_of_all_queries_go_to_the_engine_in_one_call(tiny_dir, requests):
    from rankwise.llm import load_backend

    engine = _CountingEngine(load_backend(str(tiny_dir), engine="transformers", dtype="float32"))
    reranker = load_reranker(METHOD, str(tiny_dir), backend=engine)
    one = run(reranker % TOP_K, requests)
    assert engine.calls == QUERIES
    engine.calls = 0
    together = run(reranker % TOP_K, requests, query_batch=QUERIES)
    assert engine.calls == 1
    assert {q: r.scores for q, r in together.rankings.items()} == {q: r.scores for q, r in one.rankings.items()}


@pytest.mark.slow
def test_the_ray_executor_takes_the_same_run_path(tiny_dir, requests):
    """The fifth entry point: Ray workers rebuild the stage from its spec and call the same run."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'rankwise[ray]')")
    reference = run(_stage(tiny_dir), requests, cache=False)
    on_ray = run(_stage(tiny_dir), requests, executor="ray", cache=False, workers=1)
    assert on_ray.run() == reference.run()
    assert _counters(on_ray.usage) == _counters(reference.usage)
    assert sum(w["queries"] for w in on_ray.workers.values()) == QUERIES
