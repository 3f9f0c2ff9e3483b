"""A real headline cell: pointwise.yes_no on SmolLM2-135M over 2 DL19 queries (BM25 top-10, cache off), run
twice through ``rankwise bench``, gives identical nDCG@10 per query and identical top 10s; the README table
then builds from the stored cells alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rankwise.bench import BenchConfig
from rankwise.bench.headline import headline_markdown, headline_rows


@pytest.mark.slow
def test_a_real_cell_run_twice_gives_identical_ndcg(dl19, gguf, tmp_path: Path) -> None:
    from rankwise.cli import main

    config = tmp_path / "headline.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": [str(dl19)], "top_k": 10, "max_queries": 2, "cache": False, "checkpoint": 2,
        "backend": {"engine": "transformers", "dtype": "float32"},
        "methods": [{"method": "pointwise.yes_no", "model": "smollm2-135m"}]}))
    cells = []
    for name in ("first", "second"):
        main(["bench", str(config), "--output", str(tmp_path / name)])
        cells.append(json.loads(next((tmp_path / name / "cells").glob("*yes_no*.json")).read_text()))
    first, second = cells
    assert first["queries"] == 2 and first["cache_hits"] == 0 == second["cache_hits"]
    assert first["per_query_metrics"] == second["per_query_metrics"] and first["top10"] == second["top10"]
    table = headline_markdown(headline_rows(BenchConfig.from_file(config), tmp_path / "first"), "rankwise bench")
    assert f"| `pointwise.yes_no` | smollm2-135m | top-10 | {first['metrics']['nDCG@10']:.4f} [" in table
