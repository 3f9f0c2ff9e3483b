"""llama.cpp engine (llama-cpp-python): GGUF files as they are, scored from the last position's logits.

Speed comes from computing less:
- the prompts of a call run in sorted token order, so prompts that share a prefix (one query's
  query-first prompts, one system prompt) are neighbours; each prompt evaluates only the tokens after
  the prefix it shares with what the KV cache already holds (the cache also carries over between calls);
- only the last position's logits are computed (``logits_all=False``); the log-softmax is taken in fp32
  over the full vocabulary, and choices are gathered by the shared ``base`` helpers, as every engine does.

On CPUs with AMX, llama.cpp's extra buffer types (weight repacking) crash in ``ggml_backend_amx_mul_mat``;
they are turned off there (``extra_bufts=None`` decides from the CPU flags).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rankwise.errors import InputError, ModelError
from rankwise.llm.protocol import (answered, call_usage, chat_messages, choice_token_ids, gather_choice_logprobs,
                                   mark_plain, render_chat, tokenize_marked)
from rankwise.types import Usage

AMX_FLAGS = frozenset({"amx_tile", "amx_bf16", "amx_int8"})


def cpu_has_amx(flags: frozenset[str] | None = None) -> bool:
    """True on CPUs with Intel AMX (this machine's, or the given flags), where llama.cpp's extra
    buffer types must stay off."""
    if flags is None:
        from rankwise.llm.hardware import cpu_info

        flags = cpu_info().flags
    return bool(AMX_FLAGS & flags)


@contextlib.contextmanager
def extra_buffer_types_off() -> Iterator[None]:
    """Models loaded inside this block use no extra buffer types (llama.cpp's ``--no-repack``).

    llama-cpp-python 0.3.x has no constructor argument for ``use_extra_bufts``; ``Llama`` builds its
    model parameters from ``llama_model_default_params()``, so the defaults are changed while it loads.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def without_extra_bufts():
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_bufts
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def quant_type_name(file_type: int | str | None) -> str:
    """GGUF ``general.file_type`` -> 'q4_k_m', 'q4_1', 'float16', ... ('gguf' when unknown)."""
    import llama_cpp.llama_cpp as lib

    if file_type is None:
        return "gguf"
    names = {getattr(lib, n): n for n in dir(lib) if n.startswith("LLAMA_FTYPE_")}
    name = names.get(int(file_type), "")
    special = {"LLAMA_FTYPE_ALL_F32": "float32", "LLAMA_FTYPE_MOSTLY_F16": "float16",
               "LLAMA_FTYPE_MOSTLY_BF16": "bfloat16"}
    if name in special:
        return special[name]
    return name.removeprefix("LLAMA_FTYPE_MOSTLY_").lower() if name.startswith("LLAMA_FTYPE_MOSTLY_") \
        else "gguf"


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class LlamaCppBackend:
    """A GGUF model run by llama.cpp in this process (CPU; a GPU build offloads with ``n_gpu_layers``)."""

    engine = "llamacpp"

    def __init__(self, gguf_path: str | Path, name: str | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, n_batch: int = 512, seed: int = 0, verbose: bool = False,
                 extra_bufts: bool | None = None, n_gpu_layers: int = 0):
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelError("the llamacpp engine needs llama-cpp-python: "
                             "pip install 'rankwise[llamacpp]'") from exc
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelError(f"{path}: GGUF file not found")
        threads = n_threads or _default_threads()
        if extra_bufts is None:
            extra_bufts = not cpu_has_amx()
        loading = contextlib.nullcontext() if extra_bufts else extra_buffer_types_off()
        try:
            with loading:
                self.llm = Llama(str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                                 n_threads=threads, n_threads_batch=threads, seed=seed,
                                 logits_all=False, n_gpu_layers=n_gpu_layers, verbose=verbose)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: llama.cpp cannot load this file ({exc})") from exc
        self.path = path
        self.name = name or path.stem
        self.extra_bufts = extra_bufts
        metadata = self.llm.metadata
        self.dtype = quant_type_name(metadata.get("general.file_type"))
        self.chat_template = metadata.get("tokenizer.chat_template") or None
        model = self.llm._model
        self._bos = model.token_bos()
        self._add_bos = model.add_bos_token() and self._bos >= 0
        self.bos_token = model.token_get_text(self._bos) if self._bos >= 0 else ""
        self.eos_token = model.token_get_text(model.token_eos()) if model.token_eos() >= 0 else ""
        self._n_vocab = self.llm.n_vocab()
        self._lock = threading.Lock()
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    # -- text helpers ---------------------------------------------------------------------------
    @functools.cached_property
    def control_tokens(self) -> tuple[str, ...]:
        """The texts of the vocabulary's control tokens (read once, on first use)."""
        import llama_cpp

        model = self.llm._model
        return tuple(model.token_get_text(i) for i in range(self._n_vocab)
                     if llama_cpp.llama_vocab_get_attr(model.vocab, i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL)

    def _tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` with control tokens parsed (except where ``format_chat`` marked user text) and
        no BOS added."""
        return tokenize_marked(text, lambda piece, specials: self.llm.tokenize(
            piece.encode("utf-8"), add_bos=False, special=specials))

    def _prompt_ids(self, prompt: str) -> list[int]:
        """A prompt's tokens: BOS first where the model asks for it, never twice."""
        ids = self._tokenize(prompt)
        if self._add_bos and (not ids or ids[0] != self._bos):
            ids.insert(0, self._bos)
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._tokenize(text)
        if len(ids) <= max_tokens:
            return text
        return self.llm.detokenize(ids[:max_tokens]).decode("utf-8", errors="ignore")

    def format_chat(self, user: str, system: str | None = None) -> str:
        """The GGUF's own chat template, rendered as transformers renders it (same prompt string)."""
        if not self.chat_template:
            return mark_plain((f"{system}\n\n" if system else "") + user + "\n", self.control_tokens)
        return render_chat(self.chat_template, chat_messages(user, system, self.control_tokens),
                           bos_token=self.bos_token, eos_token=self.eos_token)

    def _check_length(self, ids: Sequence[Sequence[int]], room: int = 0) -> None:
        n_ctx = self.llm.n_ctx()
        for i, toks in enumerate(ids):
            if len(toks) + room > n_ctx:
                raise InputError(f"prompt {i} has {len(toks)} tokens (+{room} to generate), more than the "
                                 f"context of {n_ctx}: truncate the documents or raise n_ctx")
            if not toks:
                raise InputError(f"prompt {i} is empty")

    def _reuse_prefix(self, toks: Sequence[int], keep_last: bool) -> int:
        """Drop what the KV cache holds beyond the prefix it shares with ``toks``; return that length.

        ``keep_last``: evaluate at least the last token again (its logits are needed)."""
        llm = self.llm
        common = _common_prefix(llm._input_ids.tolist(), toks)
        if keep_last:
            common = min(common, len(toks) - 1)
        if common > 0 and not llm._ctx.kv_cache_seq_rm(-1, common, -1):
            common = 0  # this model's memory cannot be cut (recurrent); start over
        llm.n_tokens = common
        return common

    # -- primitives -----------------------------------------------------------------------------
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        start, used = time.perf_counter(), call_usage(self)
        out = np.zeros((len(prompts), len(choices)), dtype=np.float32)
        if not prompts:
            return answered(self, out, used)
        choice_ids = choice_token_ids(self._tokenize, choices)
        ids = [self._prompt_ids(p) for p in prompts]
        self._check_length(ids)
        computed = 0
        with self._lock:
            for i in sorted(range(len(ids)), key=lambda k: ids[k]):
                toks = ids[i]
                common = self._reuse_prefix(toks, keep_last=True)
                self.llm.eval(toks[common:])
                computed += len(toks) - common
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
                out[i] = gather_choice_logprobs(_log_softmax(logits)[None, :], choice_ids)[0]
        used.calls += len(prompts)
        used.forward_passes += len(prompts)
        used.prompt_tokens += sum(len(t) for t in ids)
        used.computed_tokens += computed
        used.seconds += time.perf_counter() - start
        return answered(self, out, used)

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Sum of log P(continuation tokens | prompt) per pair: float64 [n] (query likelihood).

        llama.cpp keeps the logits of the last position only (``logits_all`` would hold n_ctx x vocab
        floats), so the prompt is evaluated once and the continuation token by token on the KV cache."""
        start, used = time.perf_counter(), call_usage(self)
        out = np.zeros(len(prompts))
        prompt_ids = [self._prompt_ids(p) for p in prompts]
        cont_ids = [self._tokenize(c) for c in continuations]
        self._check_length([p + c for p, c in zip(prompt_ids, cont_ids)])
        computed = passes = 0
        with self._lock:
            for i in sorted(range(len(prompts)), key=lambda k: prompt_ids[k] + cont_ids[k]):
                toks, cont = prompt_ids[i], cont_ids[i]
                common = self._reuse_prefix(toks, keep_last=True)
                self.llm.eval(toks[common:])
                computed, passes = computed + len(toks) - common, passes + 1
                total = 0.0
                for j, token in enumerate(cont):
                    logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
                    total += float(_log_softmax(logits)[token])
                    if j < len(cont) - 1:
                        self.llm.eval([token])
                        computed, passes = computed + 1, passes + 1
                out[i] = total
        used.calls += len(prompts)
        used.forward_passes += passes
        used.prompt_tokens += sum(len(p) + len(c) for p, c in zip(prompt_ids, cont_ids))
        used.computed_tokens += computed
        used.seconds += time.perf_counter() - start
        return answered(self, out, used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Greedy continuation (temperature 0, no penalties), cut before the first stop string."""
        start, used = time.perf_counter(), call_usage(self)
        ids = [self._prompt_ids(p) for p in prompts]
        self._check_length(ids, room=max_new_tokens)
        outputs = [""] * len(prompts)
        with self._lock:
            for i in sorted(range(len(ids)), key=lambda k: ids[k]):
                toks = ids[i]
                common = self._reuse_prefix(toks, keep_last=True)
                result = self.llm.create_completion(toks, max_tokens=max_new_tokens, temperature=0.0,
                                                    repeat_penalty=1.0,
                                                    stop=list(stop) if stop else [])
                outputs[i] = result["choices"][0]["text"]
                made = result["usage"]["completion_tokens"]
                used.completion_tokens += made
                used.forward_passes += max(made, 1)
                used.computed_tokens += len(toks) - common + made
        used.calls += len(prompts)
        used.prompt_tokens += sum(len(t) for t in ids)
        used.seconds += time.perf_counter() - start
        return answered(self, outputs, used)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Full-vocabulary log-softmax in fp32."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum(dtype=np.float32))
