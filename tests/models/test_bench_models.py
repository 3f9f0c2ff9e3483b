"""`rankwise bench` on a real model."""


from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.cli import main


@pytest.mark.slow
def test_cli_bench_on_a_real_model(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("datasets: [dl19]\ntop_k: 5\nmax_queries: 2\nmodels: [smollm2-135m]\n"
                   "methods: [pointwise.yes_no]\nrobustness: {shuffles: 2, adversarial: true}\n")
    main(["bench", str(cfg), "--output", str(tmp_path / "out")])
    cell = json.loads(next((tmp_path / "out" / "cells").glob("*pointwise*.json")).read_text())
    assert cell["model"] == "smollm2-135m" and cell["per_query"]["calls"] == 5
    assert (tmp_path / "out" / "plot.png").exists() and "pointwise.yes_no" in capsys.readouterr().out
