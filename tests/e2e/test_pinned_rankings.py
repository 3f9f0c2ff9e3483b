"""Regression: pointwise.yes_no on SmolLM2-135M (float32, transformers) over DL19 BM25 top-20, 3 queries: the
rankings the code gave before the run-path redesign (tests/fixtures/pinned_smollm2_yes_no_dl19.json, made
with that code), and the scores written to the TREC run are the model's P(yes). The engine became
batch-invariant since (fixed prefix splits and batch shapes), which moves float32 scores by up to ~1e-4, so
the scores are pinned to that tolerance and the rankings exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.data import load_dataset, read_run

PINNED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "pinned_smollm2_yes_no_dl19.json").read_text())


@pytest.mark.slow
def test_rerank_writes_the_pinned_rankings_with_the_models_scores(dl19, gguf, tmp_path):
    from rankwise.cli import main

    out = tmp_path / "r.trec"
    main(["rerank", "--dataset", str(dl19), "--run", "bm25", "--method", "pointwise.yes_no", "--model",
          "smollm2-135m", "--engine", "transformers", "--dtype", "float32", "--top-k", "20", "--qids", ",".join(PINNED),
          "--output", str(out), "--no-cache"])
    run = read_run(out)
    assert sorted(run) == sorted(PINNED)
    for qid, pinned in PINNED.items():
        head = list(run[qid].items())[:20]
        assert [d for d, _ in head] == [d for d, _ in pinned]
        assert [s for _, s in head] == pytest.approx([s for _, s in pinned], abs=2e-4)
        assert len(run[qid]) == len(load_dataset(str(dl19)).requests("bm25")[0].candidates)
