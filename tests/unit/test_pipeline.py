"""Pipelines as values: composition (>>, %, |), printing, running (head/tail, stage order, Usage per stage)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rankwise.data import load_dataset
from rankwise.errors import InputError
from rankwise.fusion import fuse_rankings, rrf
from rankwise.methods import Method, build_method
from rankwise.pipeline import BM25, Chain, FirstStage, Fuse, Identity, Rerank
from rankwise.types import Candidate, Query, Ranking, Request, Usage
from tests.oracle import OracleBackend, ideal_run, ndcg10, oracle_from_qrels

DEMO = "src/rankwise/demo_data"
GRADES = [0, 3, 1, 0, 2, 0, 3, 1]  # of candidates c0..c7, given in this (first-stage) order


class Reverse(Method):
    """A deterministic double: reverses the top k it receives and remembers what it saw."""

    name = "reverse"

    def __init__(self):
        self.seen: list[list[Candidate]] = []

    def rerank(self, query, candidates, top_k=None):
        self.seen.append(list(candidates))
        return super().rerank(query, candidates, top_k)

    def rank(self, query, head):
        return Ranking.from_order(query, head[::-1], range(len(head)), Usage(calls=len(head)))


@pytest.fixture()
def toy():
    cands = tuple(Candidate(f"c{i}", f"passage number {i}", score=10.0 - i) for i in range(8))
    oracle = OracleBackend({c.text: g for c, g in zip(cands, GRADES)})
    return [Request(Query("q", "query"), cands)], build_method("pointwise.yes_no", oracle)


def _by_grade(cands):
    return [c.docid for c in sorted(cands, key=lambda c: -GRADES[int(c.docid[1:])])]


# -- values --------------------------------------------------------------------------------------------
def test_chains_flatten_and_print_as_their_expression():
    a, b, c = (Rerank("pointwise.yes_no", model="m1"), Rerank("pairwise.heapsort", model="m2", k=10) % 20,
               Rerank("setwise.heapsort", model="m2") % 10)
    pipeline = FirstStage("bm25") % 100 >> a >> b >> c
    assert isinstance(pipeline, Chain) and len(pipeline.stages) == 4
    assert (FirstStage("bm25") % 100 >> a) >> (b >> c) == pipeline
    assert str(pipeline) == ("FirstStage('bm25') % 100 >> Rerank('pointwise.yes_no', model='m1') >> "
                             "Rerank('pairwise.heapsort', model='m2', k=10) % 20 >> "
                             "Rerank('setwise.heapsort', model='m2') % 10")
    assert repr(pipeline) == str(pipeline)
    names = {"FirstStage": FirstStage, "Rerank": Rerank, "Fuse": Fuse, "BM25": BM25}
    assert eval(str(pipeline), names) == pipeline  # the printed expression builds an equal pipeline
    assert str((a >> b) % 5) == f"({a} >> {b}) % 5"
    assert str(BM25(k1=1.2) % 50) == "BM25(k1=1.2) % 50"


def test_equality_is_by_value():
    assert Rerank("pointwise.yes_no", model="m", max_passage_tokens=3) == \
        Rerank("pointwise.yes_no", model="m", max_passage_tokens=3)
    assert Rerank("pointwise.yes_no", model="m") % 30 != Rerank("pointwise.yes_no", model="m") % 20
    assert Rerank("pointwise.yes_no", model="m") != Rerank("pointwise.yes_no", model="m", engine="llamacpp")
    assert FirstStage("bm25") % 10 == FirstStage("bm25", top_k=10)


def test_percent_restricts_a_reranker_and_sets_a_first_stage_depth():
    r = Rerank("pointwise.yes_no", model="m")
    assert (r % 100 % 30).top_k == 30 and (r % 30 % 100).top_k == 30  # at most 30 either way
    assert (FirstStage("bm25") % 10 % 100).top_k == 100 and BM25().top_k == 100
    assert r.top_k is None  # % builds a new value
    with pytest.raises(InputError, match="positive integer"):
        r % 0


def test_bar_fuses_and_flattens_plain_rrf():
    a, b, c = (Rerank(m, model="x") for m in ("pointwise.yes_no", "pointwise.graded", "pairwise.heapsort"))
    assert a | b | c == Fuse(a, b, c)
    assert str(a | b) == f"Fuse({a}, {b})"
    weighted = Fuse(a, b, method="interpolate", weights=[0.3, 0.7], norm="zscore")
    assert str(weighted) == f"Fuse({a}, {b}, method='interpolate', weights=(0.3, 0.7), norm='zscore')"
    assert (weighted | c).branches == (weighted, c)


@pytest.mark.parametrize("build, message", [
    (lambda: Rerank("pointwise.nope", model="m"), "unknown method 'pointwise.nope'"),
    (lambda: Rerank("pointwise.yes_no"), "needs a model name"),
    (lambda: Rerank("pointwise.yes_no", model="m") >> FirstStage("bm25"), "can only start a pipeline"),
    (lambda: Fuse(FirstStage("bm25"), Rerank("pointwise.yes_no", model="m")), "all start with a first stage"),
    (lambda: Fuse(FirstStage("bm25")), "at least two branches"),
    (lambda: Fuse(FirstStage("a"), FirstStage("b"), weights=[1.0]), "1 weights for 2"),
    (lambda: Rerank("pointwise.yes_no", model="m") >> "bm25", "only stages compose"),
])
def test_bad_pipelines_fail_when_built(build, message):
    with pytest.raises(InputError, match=message):
        build()


# -- running -------------------------------------------------------------------------------------------
def test_percent_reranks_the_head_and_keeps_the_tail_in_order(toy):
    requests, judge = toy
    ranking = (judge % 3).run(requests).rankings["q"]
    assert ranking.docids == _by_grade(requests[0].candidates[:3]) + [f"c{i}" for i in range(3, 8)]
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)


def test_stages_run_in_order_and_each_sees_the_previous_order_and_scores(toy):
    requests, judge = toy
    reverse = Reverse()
    result = (judge >> reverse % 2).run(requests)
    judged = _by_grade(requests[0].candidates)
    assert result.rankings["q"].docids == [judged[1], judged[0], *judged[2:]]
    seen = reverse.seen[0]
    assert [c.docid for c in seen] == judged  # the judge's order...
    assert seen[0].score > seen[-1].score and seen[0].score != requests[0].candidates[0].score  # ...and scores
    swapped = (reverse % 2 >> judge).run(requests).rankings["q"]
    assert swapped.docids == judged  # the judge sorts everything last: order of stages matters


def test_a_restricted_chain_sees_only_the_head(toy):
    requests, judge = toy
    reverse = Reverse()
    ranking = ((reverse >> judge) % 4).run(requests).rankings["q"]
    assert len(reverse.seen[0]) == 4
    head = requests[0].candidates[:4][::-1]  # as the judge got them (ties keep that order)
    assert ranking.docids == _by_grade(head) + [f"c{i}" for i in range(4, 8)]


def test_fusion_stage_equals_fusing_the_branches_by_hand(toy):
    requests, judge = toy
    reverse = Reverse()
    fused = Fuse(judge, reverse, method="interpolate", weights=[0.25, 0.75]).run(requests)
    q, cands = requests[0].query, requests[0].candidates
    by_hand = fuse_rankings([judge.rerank(q, cands), Reverse().rerank(q, cands)], "interpolate", weights=[0.25, 0.75])
    assert fused.rankings["q"].docids == by_hand.docids
    assert fused.rankings["q"].scores == pytest.approx(by_hand.scores)
    assert (judge | reverse).run(requests).rankings["q"].docids == \
        fuse_rankings([judge.rerank(q, cands), Reverse().rerank(q, cands)]).docids


def test_identity_keeps_the_input_and_interpolates_the_previous_scores(toy):
    requests, judge = toy
    q, cands = requests[0].query, requests[0].candidates
    kept = Identity().run(requests).rankings["q"]
    assert kept.docids == [c.docid for c in cands] and kept.scores == tuple(c.score for c in cands)
    reverse = Reverse()
    mixed = (reverse >> Fuse(Identity(), judge, method="interpolate", weights=[0.5, 0.5]) % 4)
    result = mixed.run(requests)
    reversed_ranking = Reverse().rerank(q, cands)  # what Identity sees: the reversed order and its scores
    head = [replace(c, score=s) for c, s in zip(reversed_ranking.candidates[:4], reversed_ranking.scores[:4])]
    by_hand = fuse_rankings([Ranking(q, tuple(head), tuple(c.score for c in head)), judge.rerank(q, head)],
                            "interpolate", weights=[0.5, 0.5])
    assert result.rankings["q"].docids == by_hand.docids + reversed_ranking.docids[4:]
    assert result.rankings["q"].scores[:4] == pytest.approx(by_hand.scores)
    assert str(mixed) == "Reverse('reverse') >> Fuse(Identity(), Pointwise('pointwise.yes_no'), " \
                         "method='interpolate', weights=(0.5, 0.5)) % 4"
    assert [r.path for r in result.stages] == ["1", "2.2"]  # Identity does no work: no stage report


def test_usage_is_summed_per_stage_and_in_total(toy):
    requests, judge = toy
    many = requests * 1 + [Request(Query("q2", "other"), requests[0].candidates[:5])]
    result = (judge % 6 >> Reverse() % 4 >> Fuse(judge, Reverse() % 2)).run(many)
    stages = {s.path: s for s in result.stages}
    assert list(stages) == ["1", "2", "3.1", "3.2"]
    assert stages["1"].usage.calls == 6 + 5 and stages["2"].usage.calls == 4 + 4
    assert stages["3.1"].usage.calls == 8 + 5 and stages["3.2"].usage.calls == 2 + 2
    assert stages["2"].stage == "Reverse('reverse') % 4"
    assert all(s.queries == 2 and s.wall_seconds > 0 for s in stages.values())
    assert result.usage.calls == sum(s.usage.calls for s in stages.values()) == 36
    assert result.rankings["q2"].usage.calls == 5 + 4 + 5 + 2  # each query's Usage sums its stages
    report = result.usage_report()
    assert report["pipeline"] == str(result.pipeline) and report["calls"] == 36
    assert [s["path"] for s in report["stages"]] == ["1", "2", "3.1", "3.2"]
    assert report["stages"][0]["seconds_per_query"] >= 0 and report["model"] == ""


def test_a_pipeline_without_a_first_stage_needs_requests(toy):
    with pytest.raises(InputError, match="has no first stage"):
        toy[1].run()
    with pytest.raises(InputError, match="retrieves from a dataset"):
        FirstStage("bm25").run()


# -- real data -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dl19_ds(dl19):
    return load_dataset(str(dl19))


def test_first_stage_then_a_perfect_judge_on_dl19(dl19_ds):
    requests = [r for r in dl19_ds.requests("bm25", top_k=20) if r.query.qid in dl19_ds.qrels][:3]
    judge = build_method("pointwise.yes_no", oracle_from_qrels(requests, dl19_ds.qrels))
    queries = [r.query for r in requests]
    result = (FirstStage("bm25") % 20 >> judge % 20).run(dataset=dl19_ds, queries=queries)
    assert ndcg10(result.run(), requests, dl19_ds.qrels) == \
        pytest.approx(ndcg10(ideal_run(requests, dl19_ds.qrels), requests, dl19_ds.qrels))
    assert [s.usage.calls for s in result.stages] == [0, 60]
    assert all(len(r) == 20 for r in result.rankings.values())


def test_fusing_two_shipped_runs_equals_rrf_of_the_run_files(dl19_ds):
    from rankwise.data import read_run

    qids = [q for q in dl19_ds.qrels][:2]
    queries = [Query(q, dl19_ds.queries[q]) for q in qids]
    fused = (FirstStage("bm25") % 30 | FirstStage("d_bert_kd_tasb") % 30).run(dataset=dl19_ds, queries=queries)
    runs = [read_run(dl19_ds.runs[name]) for name in ("bm25", "d_bert_kd_tasb")]
    runs = [{q: dict(list(run[q].items())[:30]) for q in qids} for run in runs]
    by_hand = rrf(runs)
    for q in qids:
        assert fused.rankings[q].docids == list(by_hand[q])
    top = (Fuse(FirstStage("bm25"), FirstStage("d_bert_kd_tasb")) % 10).run(dataset=dl19_ds, queries=queries)
    assert all(len(r) == 10 for r in top.rankings.values())


def test_bm25_over_the_demo_corpus_then_a_judge():
    ds = load_dataset(DEMO)
    first = BM25(top_k=5).run(dataset=ds)
    assert set(first.rankings) == set(ds.queries) and all(len(r) <= 5 for r in first.rankings.values())
    requests = [Request(r.query, r.candidates) for r in first.rankings.values()]
    judge = build_method("pointwise.yes_no", oracle_from_qrels(requests, ds.qrels))
    result = (BM25() % 5 >> judge).run(dataset=ds)
    assert ndcg10(result.run(), requests, ds.qrels) >= ndcg10(first.run(), requests, ds.qrels)
    assert result.stages[0].stage == "BM25() % 5"


def test_split_first_stage_leaves_the_rerankers():
    from rankwise.pipeline.stages import split_first_stage

    judge = Rerank("pointwise.yes_no", model="m")
    assert split_first_stage(FirstStage("bm25") % 50 >> judge % 10) == (FirstStage("bm25") % 50, judge % 10)
    first, rest = split_first_stage(FirstStage("bm25") >> judge % 20 >> judge % 5)
    assert first == FirstStage("bm25") and rest == Chain(judge % 20, judge % 5)
    assert split_first_stage(BM25()) == (BM25(), Identity())
    with pytest.raises(InputError, match="only a single first stage can be replaced"):
        split_first_stage((FirstStage("a") | FirstStage("b")) >> judge)
    with pytest.raises(InputError, match="has no first stage to replace"):
        split_first_stage(judge)


def test_usage_report_keeps_cached_queries_apart():
    from rankwise.pipeline import RunResult

    q = [Query(str(i), "q") for i in range(3)]
    computed = Usage(calls=4, computed_tokens=100, seconds=2.0)
    partly = Usage(calls=4, cache_hits=2, computed_tokens=50, seconds=1.0)
    cached = Usage(calls=4, cache_hits=4)
    result = RunResult(rankings={str(i): Ranking(q[i], (), (), u) for i, u in enumerate((computed, partly, cached))})
    for r in result.rankings.values():
        result.usage.add(r.usage)
    report = result.usage_report()
    assert report["queries_computed"] == 2 and report["queries_from_cache"] == 1
    assert report["per_computed_query"] == {"queries": 2, "calls": 4.0, "forward_passes": 0.0, "prompt_tokens": 0.0,
                                            "computed_tokens": 75.0, "completion_tokens": 0.0, "seconds": 1.5}
    assert [report["per_query"][k]["from_cache"] for k in "012"] == [False, False, True]
