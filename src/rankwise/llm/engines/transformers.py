"""transformers engine: batched, prefix-reusing, last-position-only scoring on any device.

Speed comes from computing less, not from scoring less:
- prompts of one call that share a token prefix (system prompt, instruction, a query) run that prefix once;
  its KV cache is expanded over each batch of suffixes;
- suffixes are sorted by length and right-padded, so padding is small and real tokens never see it;
- only the last real position of each prompt goes through the LM head, in fp32 (bf16 logits round
  yes/no scores into ties);
- the dtype comes from the hardware (``hardware.choose_dtype``): bf16 only where the CPU runs it natively.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rankwise.llm.protocol import (answered, call_usage, chat_messages, choice_token_ids, cut_at_stop, hf_control_tokens,
                                   mark_plain, render_chat, tokenize_marked)
from rankwise.types import Usage

log = logging.getLogger(__name__)

# A shared prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 8


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
        if n == 0:
            break
    return n


class TransformersBackend:
    """A causal LM from a hub id, a local directory, or a GGUF file (dequantised once, then cached)."""

    engine = "transformers"

    def __init__(self, model: str | Path, *, name: str | None = None, gguf_file: str | None = None,
                 dtype: str | torch.dtype = "auto", device: str = "auto", batch_size: int = 16,
                 prefix_reuse: bool = True, attn_implementation: str = "sdpa",
                 torch_model: torch.nn.Module | None = None, tokenizer=None):
        from rankwise.llm import hardware

        self.device = hardware.choose_device(device)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else hardware.choose_dtype(dtype, self.device)
        self.dtype = str(torch_dtype).replace("torch.", "")
        self.name = name or str(model)
        self.batch_size = batch_size
        self.prefix_reuse = prefix_reuse
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)
        if torch_model is None or tokenizer is None:
            torch_model, tokenizer = self._load(model, gguf_file, torch_dtype, attn_implementation)
        self.model = torch_model.to(device=self.device, dtype=torch_dtype).eval()
        self.tokenizer = tokenizer
        self.control_tokens = hf_control_tokens(tokenizer)
        self._decoder = self.model.get_decoder()
        # transformers >= 5.2x names the KV cache argument ``cache``; earlier releases ``past_key_values``.
        self._cache_arg = "cache" if "cache" in inspect.signature(self._decoder.forward).parameters \
            else "past_key_values"
        head = self.model.get_output_embeddings()
        self._head_weight = head.weight.detach().to(torch.float32)
        self._head_bias = None if getattr(head, "bias", None) is None else head.bias.detach().float()
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id or 0)

    @staticmethod
    def _load(model: str | Path, gguf_file: str | None, torch_dtype: torch.dtype, attn: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model)
        if gguf_file is None and path.suffix == ".gguf":
            from rankwise.llm.models import hf_dir_for_gguf

            path, model = hf_dir_for_gguf(path), hf_dir_for_gguf(path)
        tok = AutoTokenizer.from_pretrained(str(model), gguf_file=gguf_file)
        lm = AutoModelForCausalLM.from_pretrained(str(model), gguf_file=gguf_file, dtype=torch_dtype,
                                                  attn_implementation=attn)
        return lm, tok

    # -- text helpers ---------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        """Ids of ``text``; control-token strings that ``format_chat`` marked in user text stay plain text."""
        return tokenize_marked(text, lambda piece, specials: self.tokenizer(
            piece, add_special_tokens=False, split_special_tokens=not specials)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._tokenize(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)

    def format_chat(self, user: str, system: str | None = None) -> str:
        template = self.tokenizer.chat_template
        if not template:
            return mark_plain((f"{system}\n\n" if system else "") + user + "\n", self.control_tokens)
        return render_chat(template, chat_messages(user, system, self.control_tokens),
                           bos_token=self.tokenizer.bos_token or "", eos_token=self.tokenizer.eos_token or "")

    # -- primitives -----------------------------------------------------------------------------
    @torch.inference_mode()
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        start, used = time.perf_counter(), call_usage(self)
        if not prompts:
            return answered(self, np.zeros((0, len(choices)), dtype=np.float32), used)
        ids = [self._tokenize(p) for p in prompts]
        choice_ids = choice_token_ids(self._tokenize, choices)
        logprobs = self._logprobs(self._last_hidden_states(ids, used))
        cols = [torch.logsumexp(logprobs[:, c], dim=-1) for c in choice_ids]
        out = torch.stack(cols, dim=1).cpu().numpy().astype(np.float32)
        used.calls += len(prompts)
        used.prompt_tokens += sum(len(x) for x in ids)
        used.seconds += time.perf_counter() - start
        return answered(self, out, used)

    def _last_hidden_states(self, ids: list[list[int]], used: Usage) -> torch.Tensor:
        """Hidden state at the last token of every prompt, in input order: [n, hidden]."""
        return torch.stack([h[0] for h in self._hidden_at(ids, [[len(x) - 1] for x in ids], used)])

    def _hidden_at(self, ids: list[list[int]], want: list[list[int]], used: Usage) -> list[torch.Tensor]:
        """Hidden states (fp32) of sequence i at positions want[i], in input order."""
        shared = _common_prefix_len(ids) if self.prefix_reuse and len(ids) > 1 else 0
        shared = min(shared, min(min(w) for w in want))  # wanted positions must be computed here
        prefix_cache = None
        if shared >= MIN_SHARED_PREFIX:
            prefix_cache = self.encode_prefix(ids[0][:shared], used)
        else:
            shared = 0
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            hidden = self.run_suffixes([ids[i][shared:] for i in batch], prefix_cache, shared, used)
            for row, i in enumerate(batch):
                out[i] = hidden[row, [p - shared for p in want[i]]].to(torch.float32)
        return out

    def encode_prefix(self, ids: list[int], used: Usage):
        """Run a shared prefix once; its KV cache lets ``run_suffixes`` continue several texts from it."""
        out = self._decoder(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        used.forward_passes += 1
        used.computed_tokens += len(ids)
        return getattr(out, self._cache_arg)

    def run_suffixes(self, suffixes: list[list[int]], prefix_cache, shared: int, used: Usage) -> torch.Tensor:
        """Run right-padded suffixes (one batch) after an optional shared prefix of ``shared`` tokens
        (``encode_prefix``'s cache, not modified); returns the last hidden states [n, width, hidden]."""
        n, width = len(suffixes), max(len(s) for s in suffixes)
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for row, s in enumerate(suffixes):
            input_ids[row, :len(s)] = torch.tensor(s)
            mask[row, shared:shared + len(s)] = 1
        kwargs = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(n)
            kwargs[self._cache_arg] = cache
        positions = torch.arange(shared, shared + width).unsqueeze(0).expand(n, -1)
        hidden = self._decoder(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                               position_ids=positions.to(self.device), use_cache=prefix_cache is not None,
                               **kwargs).last_hidden_state
        used.forward_passes += 1
        used.computed_tokens += sum(len(s) for s in suffixes)
        return hidden

    def _logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 log-softmax over the vocabulary for fp32 hidden states [m, hidden]."""
        logits = hidden @ self._head_weight.T
        if self._head_bias is not None:
            logits += self._head_bias
        return torch.log_softmax(logits, dim=-1)

    @torch.inference_mode()
    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Sum of log P(continuation tokens | prompt) per pair: float64 [n] (query likelihood)."""
        start, used = time.perf_counter(), call_usage(self)
        prompt_ids = [self._tokenize(p) for p in prompts]
        cont_ids = [self._tokenize(c) for c in continuations]
        ids = [p + c for p, c in zip(prompt_ids, cont_ids)]
        want = [list(range(len(p) - 1, len(p) + len(c) - 1)) for p, c in zip(prompt_ids, cont_ids)]
        out = np.zeros(len(prompts))
        for i, hidden in enumerate(self._hidden_at(ids, want, used)):
            lp = self._logprobs(hidden)
            out[i] = lp[torch.arange(len(cont_ids[i])), torch.tensor(cont_ids[i])].sum().item()
        used.calls += len(prompts)
        used.prompt_tokens += sum(len(x) for x in ids)
        used.seconds += time.perf_counter() - start
        return answered(self, out, used)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        start, used = time.perf_counter(), call_usage(self)
        outputs: list[str] = [""] * len(prompts)
        ids = [self._tokenize(p) for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(batch):  # left padding for generation
                input_ids[row, width - len(ids[i]):] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]):] = 1
            gen = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self._pad_id, stop_strings=list(stop) if stop else None,
                                      tokenizer=self.tokenizer if stop else None)
            new = gen[:, width:]
            for row, i in enumerate(batch):
                toks = [t for t in new[row].tolist() if t != self._pad_id]
                outputs[i] = cut_at_stop(self.tokenizer.decode(toks, skip_special_tokens=True), stop)
                used.completion_tokens += len(toks)
            used.forward_passes += new.shape[1]
            used.computed_tokens += sum(len(ids[i]) for i in batch) + new.numel()
        used.calls += len(prompts)
        used.prompt_tokens += sum(len(x) for x in ids)
        used.seconds += time.perf_counter() - start
        return answered(self, outputs, used)
