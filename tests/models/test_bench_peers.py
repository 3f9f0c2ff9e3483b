"""Peer toolkits in the benchmark matrix: config, the not-installed error, the llama view, result shapes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from rankwise.bench import BenchConfig, peers
from rankwise.errors import InputError
from rankwise.types import Candidate, Query, Request, Usage
from tests.tiny_lm import tiny_tokenizer


def test_config_names_the_peer_and_labels_its_cells() -> None:
    cfg = BenchConfig.from_dict({"datasets": ["dl19"], "models": ["m"],
                                 "methods": ["setwise.heapsort",
                                             {"method": "setwise.heapsort", "peer": "llm-rankers"}]})
    ours, theirs = cfg.methods
    assert (ours.peer, ours.name) == ("", "setwise.heapsort")
    assert (theirs.peer, theirs.name, theirs.model) == ("llm-rankers", "setwise.heapsort@llm-rankers", "m")


@pytest.mark.parametrize("entry, message", [
    ({"method": "setwise.heapsort", "peer": "pyterrier-x"}, r"methods\[0\]: unknown peer 'pyterrier-x'"),
    ({"method": "pointwise.qlm", "peer": "llm-rankers"}, r"methods\[0\]: peer llm-rankers has no pointwise.qlm"),
])
def test_config_rejects_unknown_peers_and_methods(entry, message: str) -> None:
    with pytest.raises(InputError, match=message):
        BenchConfig.from_dict({"datasets": ["dl19"], "models": ["m"], "methods": [entry]}, "cfg.yaml")


def test_a_missing_peer_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"peer rerankers is not installed here: `pip install --no-deps rerankers`"):
        peers.peer_reranker("rerankers", "crossencoder", "some-dir", {})


def test_options_a_peer_cannot_honour_are_errors() -> None:
    with pytest.raises(InputError, match=r"setwise.heapsort@llm-rankers: the peer cannot honour option\(s\) prompt"):
        peers.peer_reranker("llm-rankers", "setwise.heapsort", "m", {"k": 5, "prompt": "setwise.select"})


def test_peer_rankings_keep_every_candidate_once() -> None:
    cands = tuple(Candidate(f"d{i}", f"text {i}") for i in range(5))
    request = Request(Query("q", "query"), cands)
    # the peer returned the head (3) in a new order, with one id twice and one missing
    ranking = peers._ranking(request, cands[:3], ["d2", "d0", "d2"], Usage(calls=3))
    assert ranking.docids == ["d2", "d0", "d1", "d3", "d4"]
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True) and ranking.usage.calls == 3


def test_llama_view_of_a_qwen2_checkpoint_has_the_same_logits(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    source = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=256, tie_word_embeddings=True)).eval()
    with torch.no_grad():  # random biases, so that dropping them would show
        for layer in source.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_()
    src_dir = tmp_path / "qwen"
    source.save_pretrained(src_dir)
    tok.save_pretrained(src_dir)
    view_dir = peers.llama_view(src_dir)
    assert view_dir != src_dir and peers.llama_view(view_dir) == view_dir  # a llama checkpoint stays as it is
    view = AutoModelForCausalLM.from_pretrained(view_dir).eval()
    assert view.config.model_type == "llama"
    ids = tok("the capital of France is Paris", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(source(**ids).logits, view(**ids).logits, atol=1e-5)
    assert peers.llama_view(src_dir) == view_dir  # written once


def test_llama_view_refuses_other_architectures(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gemma3"}')
    with pytest.raises(InputError, match="llm-rankers runs llama-architecture models"):
        peers.llama_view(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("rerankers") is None, reason="rerankers is a benchmark-only peer")
def test_rerankers_orders_like_rankwise_on_the_same_crossencoder(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rankwise.llm.engines.sentence_transformers import CrossEncoderBackend
    from rankwise.llm.models import resolve_model
    from rankwise.methods import build_method

    tok = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").source))
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64, num_labels=1)
                                  ).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = ["bitcoin mining", "plants make food from light", "sourdough bread", "the capital of France"]
    request = Request(Query("q", "plants make food"), tuple(Candidate(f"d{i}", t) for i, t in enumerate(texts)))
    theirs = peers.peer_reranker("rerankers", "crossencoder", str(tmp_path), {})(request, 4)
    ours = build_method("crossencoder", CrossEncoderBackend(str(tmp_path))).rerank(request.query, request.candidates)
    assert theirs.docids == ours.docids and theirs.usage.engine == "rerankers"
    # the same pairs through the same tokenizer: the same prompt tokens, so the plot's token axis can hold both
    assert theirs.usage.prompt_tokens == ours.usage.prompt_tokens > 0


def test_rankgpt_peer_takes_only_its_options_and_needs_litellm(monkeypatch) -> None:
    with pytest.raises(InputError, match=r"listwise.full@rerankers: the peer cannot honour option\(s\) window_size; "
                                         r"it takes base_url, max_passage_tokens"):
        peers.peer_reranker("rerankers", "listwise.full", "m", {"window_size": 20})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "litellm" else object())
    with pytest.raises(InputError, match=r"RankGPTRanker calls the model through litellm: `pip install litellm`"):
        peers.peer_reranker("rerankers", "listwise.full", "m", {})


@pytest.mark.slow
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("rerankers", "litellm", "sse_starlette")),
                    reason="rerankers, litellm and the llama.cpp server are benchmark-only")
def test_rankgpt_peer_shows_the_model_every_passage_through_its_own_server() -> None:
    from transformers import AutoTokenizer

    texts = ["Paris is the capital of France.", "Bananas are yellow.", "The Eiffel tower stands in Paris.",
             "Python is a programming language."]
    request = Request(Query("q", "capital of France"), tuple(Candidate(f"d{i}", t) for i, t in enumerate(texts)))
    ranking = peers.peer_reranker("rerankers", "listwise.full", "qwen2.5-0.5b", {"max_passage_tokens": 64})(request, 4)
    assert sorted(ranking.docids) == ["d0", "d1", "d2", "d3"] and ranking.usage.calls == 1
    tokenizer = AutoTokenizer.from_pretrained(peers._model_dir("qwen2.5-0.5b"))
    passages = sum(len(tokenizer(t)["input_ids"]) for t in texts)
    assert ranking.usage.prompt_tokens > passages  # rerankers' default rank_end=0 would send none of them


@pytest.mark.skipif(importlib.util.find_spec("llmrankers") is None, reason="llm-rankers is a benchmark-only peer")
def test_llm_rankers_listwise_runs_under_transformers_5_and_counts_what_it_generated(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    from tests.tiny_lm import save_tiny_model

    save_tiny_model(tmp_path)
    GenerationConfig(max_new_tokens=6, do_sample=False).save_pretrained(tmp_path)  # a short answer
    request = Request(Query("q", "plants make food"),
                      tuple(Candidate(f"d{i}", t) for i, t in enumerate(["bitcoin mining", "plants food light",
                                                                          "sourdough bread", "yeast"])))
    rerank = peers.peer_reranker("llm-rankers", "listwise.window", str(tmp_path), {"window_size": 4, "step": 2})
    ranking = rerank(request, 4)  # apply_chat_template(return_tensors="pt") handed back the ids tensor
    assert sorted(ranking.docids) == ["d0", "d1", "d2", "d3"] and ranking.usage.calls == 1
    assert 0 < ranking.usage.completion_tokens <= 6 < ranking.usage.prompt_tokens  # generated, not the whole sequence
