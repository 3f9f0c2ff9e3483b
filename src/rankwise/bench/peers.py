"""Peer toolkits in the benchmark matrix: the same candidates reranked by another toolkit's implementation
of a rankwise method, on the same model, timed the same way.

Peers are never rankwise dependencies; install them in a benchmark environment:

- ``llm-rankers`` (``pip install --no-deps llm-rankers``): pairwise (heap sort, bubble sort, all pairs),
  setwise (heap sort, bubble sort) and listwise (sliding windows) on llama-architecture models. A qwen2
  checkpoint is handed to it as an exact llama view (``llama_view``).
- ``rerankers`` (``pip install --no-deps rerankers``): its cross-encoder class (``TransformerRanker``) on the
  same local CrossEncoder directory, and its LLM class ``RankGPTRanker`` (one RankGPT window over the top k,
  rankwise's ``listwise.full``; ``pip install litellm``). That class calls an API through litellm: it is
  pointed at an OpenAI-compatible server of the same model, ``base_url``, or, without one, at a llama.cpp
  server (``llama_cpp.server``) the peer starts on the model's GGUF file for the run.

A matrix entry names its peer: ``{method: setwise.heapsort, peer: llm-rankers, options: {k: 10}}``. The
options a peer understands are the rankwise method's (``k``, ``set_size``, ``window_size``, ``step``,
``max_passage_tokens``; ``batch_size`` and ``dtype`` for rerankers' cross-encoder, ``base_url`` for its
RankGPT); any other option is an error. Passages
are cut to ``max_passage_tokens`` with the model's tokenizer before the peer sees them, as rankwise's method
cuts them.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rankwise.errors import InputError
from rankwise.stage import with_tail
from rankwise.pipeline import RunResult
from rankwise.types import Candidate, Ranking, Request, Usage

logger = logging.getLogger(__name__)

PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # peer -> (module to import, rankwise methods it implements)
    "llm-rankers": ("llmrankers", ("pairwise.heapsort", "pairwise.sliding", "pairwise.allpairs",
                                   "setwise.heapsort", "setwise.bubblesort", "listwise.window")),
    "rerankers": ("rerankers", ("crossencoder", "listwise.full")),
}
DEFAULT_PASSAGE_TOKENS = 128
_LLM_RANKERS_OPTIONS = frozenset({"k", "set_size", "window_size", "step", "max_passage_tokens"})
PEER_OPTIONS: dict[tuple[str, str], frozenset[str]] = {
    **{("llm-rankers", method): _LLM_RANKERS_OPTIONS for method in PEERS["llm-rankers"][1]},
    ("rerankers", "crossencoder"): frozenset({"batch_size", "dtype"}),
    ("rerankers", "listwise.full"): frozenset({"base_url", "max_passage_tokens"}),
}
SERVER_START_SECONDS = 180.0  # a llama.cpp server loads a small GGUF in seconds; allow for a busy machine


def check_peer(peer: str, method: str) -> None:
    """Raise an InputError naming the problem when ``peer`` is unknown or does not implement ``method``."""
    if peer not in PEERS:
        raise InputError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    if method not in PEERS[peer][1]:
        raise InputError(f"peer {peer} has no {method}; it implements {', '.join(PEERS[peer][1])}")


def peer_reranker(peer: str, method: str, model: str, options: dict[str, Any]) -> Callable[[Request, int], Ranking]:
    """A function (request, top_k) -> Ranking that runs ``method`` in the peer toolkit on ``model``."""
    check_peer(peer, method)
    known = PEER_OPTIONS[(peer, method)]
    unknown = set(options) - known
    if unknown:
        raise InputError(f"{method}@{peer}: the peer cannot honour option(s) {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(sorted(known))}")
    module = PEERS[peer][0]
    if importlib.util.find_spec(module) is None:
        raise InputError(f"peer {peer} is not installed here: `pip install --no-deps {peer}` in a benchmark "
                         f"environment (it is never a rankwise dependency)")
    if peer == "rerankers" and method == "crossencoder":
        return _rerankers_crossencoder(model, options)
    if peer == "rerankers":
        return _rerankers_rankgpt(model, options)
    return _llm_rankers(method, model, options)


def rerank_with_peer(rerank: Callable[[Request, int], Ranking], requests: Sequence[Request],
                     top_k: int) -> RunResult:
    """Every request through a peer, timed like a rankwise run (``rankwise.pipeline.run``)."""
    result = RunResult()
    started = time.perf_counter()
    for request in requests:
        ranking = rerank(request, top_k)
        result.rankings[request.query.qid] = ranking
        result.usage.add(ranking.usage)
    result.wall_seconds = time.perf_counter() - started
    return result


def _ranking(request: Request, head: Sequence[Candidate], docids: Sequence[str], usage: Usage) -> Ranking:
    """The peer's order of the head, then the unreranked tail in input order; every candidate once."""
    position = {c.docid: i for i, c in enumerate(head)}
    order = list(dict.fromkeys(position[d] for d in docids if d in position))
    order += [i for i in range(len(head)) if i not in set(order)]
    return with_tail(request.query, request.candidates, Ranking.from_order(request.query, head, order), usage)


def _model_dir(model: str) -> Path:
    from rankwise.llm.models import hf_dir_for_gguf, resolve_model

    resolved = resolve_model(model)
    if resolved.hf_dir is not None:
        return Path(resolved.hf_dir)
    if resolved.gguf_file is not None:
        return hf_dir_for_gguf(resolved.gguf_file)
    return Path(str(resolved.source))


def llama_view(model_dir: Path) -> Path:
    """A qwen2 checkpoint re-expressed as the llama architecture (which llm-rankers accepts), same logits.

    Qwen2 is llama plus biases on the q/k/v projections: ``LlamaConfig(attention_bias=True)`` has those and
    one on o_proj, set to zero. Written once beside the source directory, after checking that both give the
    same last-token logits on a probe (float32). A llama checkpoint is returned as it is.
    """
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type == "llama":
        return model_dir
    if model_type != "qwen2":
        raise InputError(f"llm-rankers runs llama-architecture models; {model_dir} is {model_type}")
    target = model_dir.with_name(model_dir.name + "-llama-view")
    if (target / "config.json").is_file():
        return target
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    c = source.config
    config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps, rope_parameters=dict(c.rope_parameters), attention_bias=True,
        mlp_bias=False, tie_word_embeddings=c.tie_word_embeddings, bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)
    view = LlamaForCausalLM(config).eval()
    state = source.state_dict()
    for i in range(c.num_hidden_layers):
        state[f"model.layers.{i}.self_attn.o_proj.bias"] = torch.zeros(c.hidden_size)
    missing, unexpected = view.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not (c.tie_word_embeddings and m == "lm_head.weight")]:
        raise InputError(f"llama view of {model_dir}: missing {missing}, unexpected {unexpected}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    probe = tokenizer("Which of the following two passages is more relevant to the query?", return_tensors="pt")
    with torch.no_grad():
        diff = (source(**probe).logits[0, -1] - view(**probe).logits[0, -1]).abs().max().item()
    if diff > 1e-3:
        raise InputError(f"llama view of {model_dir} differs from the source: max |logit diff| {diff}")
    logger.warning("llama view of %s written to %s (max |logit diff| %.1e on a probe)", model_dir.name, target, diff)
    view.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def _truncator(model_dir: Path, max_tokens: int) -> Callable[[str], str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)

    return cut


def _llm_rankers(method: str, model: str, options: dict[str, Any]) -> Callable[[Request, int], Ranking]:
    from llmrankers.rankers import SearchResult

    model_dir = str(llama_view(_model_dir(model)))
    k = int(options.get("k", 10))
    family, algorithm = method.split(".")
    if family == "pairwise":
        from llmrankers.pairwise import PairwiseLlmRanker

        name = {"heapsort": "heapsort", "sliding": "bubblesort", "allpairs": "allpair"}[algorithm]
        ranker = PairwiseLlmRanker(model_dir, None, "cpu", method=name, k=k)
    elif family == "setwise":
        from llmrankers.setwise import SetwiseLlmRanker

        ranker = SetwiseLlmRanker(model_dir, None, "cpu", num_child=int(options.get("set_size", 4)) - 1, k=k,
                                  method=algorithm, scoring="generation")
    else:
        from llmrankers.listwise import ListwiseLlmRanker

        ranker = ListwiseLlmRanker(model_dir, None, "cpu", window_size=int(options.get("window_size", 20)),
                                   step_size=int(options.get("step", 10)), scoring="generation", num_repeat=1)
        _ids_from_chat_template(ranker.tokenizer)
    cut = _truncator(Path(model_dir), int(options.get("max_passage_tokens", DEFAULT_PASSAGE_TOKENS)))
    prompts_per_compare = 2 if family == "pairwise" else 1

    def rerank(request: Request, top_k: int) -> Ranking:
        head = request.candidates[:top_k]
        out = ranker.rerank(request.query.text, [SearchResult(docid=c.docid, score=c.score, text=cut(c.content))
                                                 for c in head])
        calls = ranker.total_compare * prompts_per_compare  # llm-rankers resets its counters in each rerank()
        usage = Usage(calls=calls, forward_passes=calls, prompt_tokens=ranker.total_prompt_tokens,
                      completion_tokens=_generated_tokens(ranker), engine="llm-rankers", dtype="float32",
                      model=model)
        return _ranking(request, head, [r.docid for r in out], usage)

    return rerank


def _generated_tokens(ranker: Any) -> int:
    """The tokens llm-rankers generated: on decoder-only models it adds ``generate``'s whole output, prompt
    included, to ``total_completion_tokens``, so the generated part is that less ``total_prompt_tokens``."""
    return max(0, ranker.total_completion_tokens - ranker.total_prompt_tokens)


def _ids_from_chat_template(tokenizer: Any) -> None:
    """llm-rankers' listwise ranker (written for transformers 4) reads ``apply_chat_template(...,
    return_tensors="pt")`` as the ids tensor; transformers 5 returns a BatchEncoding there unless asked for
    ``return_dict=False``. Ask for it, so the peer runs as its authors ran it."""
    original = tokenizer.apply_chat_template

    def apply_chat_template(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("return_dict", False)
        return original(*args, **kwargs)

    tokenizer.apply_chat_template = apply_chat_template


def _rerankers_crossencoder(model: str, options: dict[str, Any]) -> Callable[[Request, int], Ranking]:
    from rerankers import Reranker

    model_dir = str(_model_dir(model))
    ranker = Reranker(model_dir, model_type="cross-encoder", verbose=0, dtype=options.get("dtype"),
                      batch_size=int(options.get("batch_size", 32)))

    def rerank(request: Request, top_k: int) -> Ranking:
        head = request.candidates[:top_k]
        texts = [c.content for c in head]
        results = ranker.rank(request.query.text, texts, doc_ids=[c.docid for c in head])
        # the pairs as its tokenizer cut them (about a millisecond a query, inside the timing like rankwise's count)
        tokens = sum(len(ids) for ids in ranker.tokenizer([request.query.text] * len(texts), texts,
                                                          truncation=True)["input_ids"]) if texts else 0
        usage = Usage(calls=len(head), forward_passes=len(head), prompt_tokens=tokens, engine="rerankers",
                      dtype=str(ranker.dtype).replace("torch.", ""), model=model)
        return _ranking(request, head, [str(r.document.doc_id) for r in results.results], usage)

    return rerank


def _rerankers_rankgpt(model: str, options: dict[str, Any]) -> Callable[[Request, int], Ranking]:
    """rerankers' RankGPTRanker: one window over the top k, RankGPT's chat prompt, through litellm to
    ``base_url`` or to a llama.cpp server started here on the model's GGUF file."""
    if importlib.util.find_spec("litellm") is None:
        raise InputError("listwise.full@rerankers: rerankers' RankGPTRanker calls the model through litellm: "
                         "`pip install litellm` in the benchmark environment")
    # litellm downloads its model price list at import unless told to use the copy it ships
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm import completion
    from rerankers.models.rankgpt_rankers import RankGPTRanker

    base_url, dtype = options.get("base_url"), "server"
    if not base_url:
        base_url, dtype = _llama_cpp_server(model)
    cut = _truncator(_model_dir(model), int(options.get("max_passage_tokens", DEFAULT_PASSAGE_TOKENS)))
    answers: list[Any] = []

    class CountedRankGPT(RankGPTRanker):
        """RankGPTRanker._query_llm with the server's address and the token counts kept."""

        def _query_llm(self, messages: list[dict[str, str]]) -> str:
            response = completion(api_key=self.api_key, model=self.model, messages=messages, temperature=0,
                                  api_base=base_url)
            answers.append(response.usage)
            return response.choices[0].message.content

    ranker = CountedRankGPT(f"openai/{model}", api_key="none", verbose=0)

    def rerank(request: Request, top_k: int) -> Ranking:
        head = request.candidates[:top_k]
        answers.clear()
        results = ranker.rank(request.query.text, [cut(c.content) for c in head], doc_ids=[c.docid for c in head],
                              rank_end=len(head))  # its default rank_end=0 would show the model no passage
        usage = Usage(calls=len(answers), forward_passes=len(answers),
                      prompt_tokens=sum(a.prompt_tokens for a in answers),
                      completion_tokens=sum(a.completion_tokens for a in answers), engine="rerankers+litellm",
                      dtype=dtype, model=model)
        return _ranking(request, head, [str(r.document.doc_id) for r in results.results], usage)

    return rerank


def _llama_cpp_server(model: str) -> tuple[str, str]:
    """Serve the model's GGUF file with ``rankwise.llm.engines.llama_server`` until this process exits; returns its /v1
    address and the GGUF's quantisation (the peer's "dtype")."""
    from rankwise.llm.engines.llama_server import llama_server
    from rankwise.llm.models import resolve_model

    gguf = resolve_model(model).gguf_file
    if gguf is None:
        raise InputError(f"listwise.full@rerankers: {model} has no GGUF file to serve; give base_url, an "
                         f"OpenAI-compatible server of the model")
    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("sse_starlette") is None:
        raise InputError("listwise.full@rerankers: no base_url, and the llama.cpp server is not installed: "
                         "`pip install 'llama-cpp-python[server]'` (or give base_url)")
    running = contextlib.ExitStack()
    base_url = running.enter_context(llama_server(gguf, n_ctx=8192, start_timeout=SERVER_START_SECONDS))
    atexit.register(running.close)
    logger.warning("llama.cpp server for rerankers' RankGPTRanker: %s on %s", gguf.name, base_url)
    return base_url, gguf.stem.rsplit("-", 1)[-1]
