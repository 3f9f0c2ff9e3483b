"""The seq2seq engine on a randomly initialised tiny T5: every primitive against a direct model call,
batching, accounting, the methods (monoT5 pointwise, duoT5 pairwise, Flan-T5 setwise) and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankwise.errors import ModelError
from rankwise.llm.cache import CachedBackend, OutputCache
from rankwise.llm.engines.seq2seq import DECODER, Seq2SeqBackend
from rankwise.methods import build_method
from rankwise.types import Candidate, Query
from tests.tiny_lm import save_tiny_model
from tests.tiny_seq2seq import save_tiny_t5, tiny_t5_backend

TRUE_FALSE = ["true", "false"]
PASSAGES = ["Plants make food from light", "sourdough bread rises because of yeast", "Paris is the capital",
            "bitcoin mining", "how do plants make food", "yeast", "the capital of France"]


@pytest.fixture(scope="module")
def backend() -> Seq2SeqBackend:
    return tiny_t5_backend(batch_size=3)


def _monot5(backend, n: int = 7) -> list[str]:
    return [backend.format_chat(f"Query: how do plants make food Document: {p} Relevant:") for p in PASSAGES[:n]]


def _reference_first_step(backend, text: str, decoder_prefix: str = "") -> torch.Tensor:
    """log-softmax of the decoder's next token, computed as pygaggle does (one unbatched model call)."""
    enc = backend.tokenizer(text, return_tensors="pt")
    dec = [backend.model.config.decoder_start_token_id] + backend._tokenize(decoder_prefix)
    with torch.no_grad():
        logits = backend.model(**enc, decoder_input_ids=torch.tensor([dec])).logits[0, -1]
    return torch.log_softmax(logits.float(), dim=-1)


def test_choice_logprobs_are_the_decoders_first_step(backend):
    prompts = _monot5(backend)
    out = backend.choice_logprobs(prompts, TRUE_FALSE)
    assert out.shape == (7, 2) and out.dtype == np.float32 and (out < 0).all()
    true_id, false_id = backend._tokenize("true")[0], backend._tokenize("false")[0]
    for row, prompt in zip(out, prompts):
        ref = _reference_first_step(backend, prompt.removesuffix(DECODER))
        np.testing.assert_allclose(row, [ref[true_id].item(), ref[false_id].item()], atol=1e-5)


def test_text_after_the_mark_goes_to_the_decoder(backend):
    prompt = _monot5(backend, 1)[0] + "Passage"
    out = backend.choice_logprobs([prompt], ["A", "B"])[0]
    ref = _reference_first_step(backend, prompt.split(DECODER)[0], decoder_prefix="Passage")
    np.testing.assert_allclose(out, [ref[backend._tokenize("A")[0]].item(), ref[backend._tokenize("B")[0]].item()],
                               atol=1e-5)
    assert backend.format_chat("hi", system="be brief") == "be brief\n\nhi" + DECODER


def test_batched_equals_unbatched(backend):
    prompts = _monot5(backend)
    backend.batch_size = 3
    together = backend.choice_logprobs(prompts, TRUE_FALSE)
    qlm = backend.continuation_logprobs(prompts, ["how do plants make food"] * 7)
    generated = backend.generate(prompts, max_new_tokens=4)
    backend.batch_size = 1
    alone = np.concatenate([backend.choice_logprobs([p], TRUE_FALSE) for p in prompts])
    qlm_alone = [backend.continuation_logprobs([p], ["how do plants make food"])[0] for p in prompts]
    generated_alone = [backend.generate([p], max_new_tokens=4)[0] for p in prompts]
    backend.batch_size = 3
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(qlm, qlm_alone, atol=1e-4)
    assert generated == generated_alone


def test_continuation_logprobs_sum_the_target_tokens(backend):
    prompt = _monot5(backend, 1)[0]
    target = backend._tokenize("how do plants")
    enc = backend.tokenizer(prompt.removesuffix(DECODER), return_tensors="pt")
    with torch.no_grad():
        logits = backend.model(**enc, decoder_input_ids=torch.tensor([[0] + target[:-1]])).logits[0]
    ref = torch.log_softmax(logits, dim=-1)[torch.arange(len(target)), target].sum().item()
    assert backend.continuation_logprobs([prompt], ["how do plants"])[0] == pytest.approx(ref, abs=1e-4)


def test_usage_is_counted_like_the_transformers_engine(backend):
    prompts = _monot5(backend, 5)
    before = backend.usage.copy()
    backend.choice_logprobs(prompts, TRUE_FALSE)
    spent = backend.usage.copy() - before
    encoder_tokens = sum(len(backend.tokenizer(p.removesuffix(DECODER))["input_ids"]) for p in prompts)
    assert spent.calls == 5 and spent.prompt_tokens == encoder_tokens
    assert spent.forward_passes == 2  # batches of <= 3
    assert spent.computed_tokens == encoder_tokens + 5  # plus one decoder start token each
    before = backend.usage.copy()
    texts = backend.generate(prompts[:2], max_new_tokens=3)
    spent = backend.usage.copy() - before
    assert spent.calls == 2 and 1 <= spent.forward_passes <= 3 and spent.seconds > 0
    assert spent.completion_tokens >= sum(1 for t in texts if t)


def test_generate_is_greedy_and_cuts_at_stop(backend):
    prompts = _monot5(backend, 3)
    first = backend.generate(prompts, max_new_tokens=6)
    assert first == backend.generate(prompts, max_new_tokens=6) and all(isinstance(t, str) for t in first)
    assert all(" " not in t for t in backend.generate(prompts, max_new_tokens=6, stop=[" "]))


def test_truncate_and_count_tokens(backend):
    text = "Plants make food from light " * 10
    cut = backend.truncate(text, 7)
    assert backend.count_tokens(cut) <= 7 < backend.count_tokens(text)
    assert backend.truncate("yeast", 7) == "yeast"


def test_bf16_model_keeps_an_fp32_head():
    backend = tiny_t5_backend(dtype="bfloat16")
    assert backend.model.get_output_embeddings().weight.dtype == torch.float32
    out = backend.choice_logprobs(_monot5(backend), TRUE_FALSE)
    assert out.dtype == np.float32 and len(set(out[:, 0].tolist())) > 1


def _candidates(n: int = 5) -> list[Candidate]:
    return [Candidate(docid=f"d{i}", text=p, score=float(-i)) for i, p in enumerate(PASSAGES[:n])]


def test_monot5_pointwise_reranks_by_p_true():
    backend = tiny_t5_backend(name="castorini/monot5-base-msmarco")
    method = build_method("pointwise.yes_no", backend)
    assert method.template.name == "pointwise.monot5"
    query, candidates = Query("q1", "how do plants make food"), _candidates()
    ranking = method.rerank(query, candidates)
    assert sorted(c.docid for c in ranking.candidates) == sorted(c.docid for c in candidates)
    lp = backend.choice_logprobs([backend.format_chat(f"Query: {query.text} Document: {c.content} Relevant:")
                                  for c in candidates], TRUE_FALSE)
    p_true = np.exp(lp[:, 0]) / np.exp(lp).sum(axis=1)
    expected = [candidates[i].docid for i in np.argsort(-p_true, kind="stable")]
    assert [c.docid for c in ranking.candidates] == expected
    assert ranking.usage.calls == 5
    assert build_method("pointwise.yes_no", backend, prompt="pointwise.yes_no").template.name == "pointwise.yes_no"


def test_duot5_allpairs_is_the_sym_sum_of_p_true():
    backend = tiny_t5_backend(name="castorini/duot5-base-msmarco")
    method = build_method("pairwise.allpairs", backend)
    query, candidates = Query("q1", "how do plants make food"), _candidates(4)
    assert method.prompt(query.text, "a", "b") == f"Query: {query.text} Document0: a Document1: b Relevant:{DECODER}"
    ranking = method.rerank(query, candidates)
    assert ranking.usage.comparisons == 6

    def p_true(a: Candidate, b: Candidate) -> float:
        lp = backend.choice_logprobs([method.prompt(query.text, a.content, b.content)], TRUE_FALSE)[0]
        return float(1 / (1 + np.exp(lp[1] - lp[0])))

    sym_sum = {c.docid: sum(p_true(c, o) + 1 - p_true(o, c) for o in candidates if o is not c) / 2
               for c in candidates}
    got = dict(zip((c.docid for c in ranking.candidates), ranking.scores))
    for docid, score in sym_sum.items():
        assert got[docid] == pytest.approx(score, abs=1e-5)


def test_flan_t5_setwise_primes_the_decoder_with_passage():
    backend = tiny_t5_backend(name="google/flan-t5-large")
    method = build_method("setwise.heapsort", backend, k=2)
    prompt = method.prompt("how do plants make food", ["a", "b", "c"])
    assert prompt.endswith(DECODER + "Passage")
    ranking = method.rerank(Query("q1", "how do plants make food"), _candidates(7))
    assert sorted(c.docid for c in ranking.candidates) == sorted(c.docid for c in _candidates(7))


def test_cache_works_over_the_seq2seq_engine(tmp_path):
    backend = tiny_t5_backend()
    cached = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    prompts = _monot5(cached, 4)
    first = cached.choice_logprobs(prompts, TRUE_FALSE)
    qlm = cached.continuation_logprobs(prompts, ["plants"] * 4)
    text = cached.generate(prompts[:2], max_new_tokens=3)
    passes = backend.usage.forward_passes
    again = CachedBackend(backend, OutputCache(tmp_path / "c.sqlite"))
    np.testing.assert_array_equal(first, again.choice_logprobs(prompts, TRUE_FALSE))
    np.testing.assert_array_equal(qlm, again.continuation_logprobs(prompts, ["plants"] * 4))
    assert again.generate(prompts[:2], max_new_tokens=3) == text
    assert backend.usage.forward_passes == passes and backend.usage.cache_hits == 10


def test_load_backend_picks_seq2seq_for_an_encoder_decoder_directory(tmp_path):
    from rankwise.llm import load_backend

    save_tiny_t5(tmp_path / "t5")
    for engine in ("seq2seq", "auto"):
        loaded = load_backend(str(tmp_path / "t5"), engine=engine, dtype="float32")
        assert isinstance(loaded, Seq2SeqBackend)
    assert loaded.choice_logprobs([loaded.format_chat("Query: x Document: y Relevant:")], TRUE_FALSE).shape == (1, 2)
    save_tiny_model(tmp_path / "llama")
    with pytest.raises(ModelError, match="encoder-decoder"):
        load_backend(str(tmp_path / "llama"), engine="seq2seq", dtype="float32")
