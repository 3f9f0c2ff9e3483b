"""transformers engine: batched, prefix-reusing, last-position-only scoring on any device.

Speed comes from computing less, not from scoring less:
- prompts of one call that share their split prefix (chat header and instruction, up to a fixed split
  point, see below) run it once; its KV cache is expanded over each batch of suffixes;
- suffixes are sorted by length, grouped by width bucket and right-padded; real tokens never see padding;
- only the last real position of each prompt goes through the LM head, in fp32 (bf16 logits round
  yes/no scores into ties);
- the dtype comes from the hardware (``hardware.choose_dtype``): bf16 only where the CPU runs it natively.

Batch invariance: a prompt's result is a function of that prompt alone (and of the engine's settings),
bit for bit, whatever else shares the call (other queries' prompts, merged HTTP requests), in any order.
Measured on CPU (benchmarks/batch_invariance.py): matmul kernels pick their blocking from the number of
rows M, so the same row gets different bits in a GEMM of another M (fp32 and bf16, MKL and oneDNN); inside
one GEMM shape a row's bits do not depend on its position or on the other rows. So every pass that touches a
prompt has a shape chosen from that prompt alone:
- the prefix split is a property of the prompt (``PREFIX_SPLITS``: the largest that fits before the
  first scored position; for a prompt scored from ``DEEP_SPLIT_FROM`` tokens on, the last multiple of
  ``DEEP_SPLIT_STEP`` at least ``DEEP_SPLIT_TAIL`` tokens before it), never the common prefix of the call;
  prompts with the same split tokens share one prefix pass of exactly that length;
- suffixes run in micro-batches of exactly min(batch_size, ``ROWS_PER_PASS``) rows (filled up with copies
  of a real row), or alone when wider than ``BATCHED_WIDTH``, padded
  to a fixed width bucket (``WIDTH_BUCKET``) of their own length, with an explicit 4D mask (the causal
  mask is never skipped for some batches and not for others);
- the LM head runs in fixed tiles of ``HEAD_ROWS`` rows;
- greedy generation runs one prompt at a time (no left padding shared with other prompts).
Cost (bf16, AMX, 3 DL19 queries x 20 yes/no prompts, merged call): about 1.45x the old engine's time on
SmolLM2-135M and 1.25x on Qwen2.5-0.5B (the split at 64 instead of the full ~90 shared tokens, bucket padding
and filler rows); see BENCHMARKS.md.
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

from rankwise.llm.engines.hf_text import HFTokenizerText
from rankwise.llm.protocol import (answered, call_usage, chat_messages, choice_token_ids, cut_at_stop, hf_control_tokens,
                                   mark_plain, render_chat)
from rankwise.types import Usage

log = logging.getLogger(__name__)

# A shared prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 8
# Prompt-intrinsic prefix split points (tokens): a prompt splits at the largest one not after its first
# scored position. 64 sits inside the judging instruction of rankwise's templates on SmolLM2 and Qwen2.5
# (their shared heads are 89-117 tokens); 8 keeps short prompts sharing the chat header.
PREFIX_SPLITS = (MIN_SHARED_PREFIX, 64)
# A prompt whose first scored position lies at least this deep splits at the last multiple of DEEP_SPLIT_STEP
# that leaves DEEP_SPLIT_TAIL tokens before it instead: its long head (a group of passages, a whole list) runs
# once for every prompt that shares it (groupwise.logits asks ~20 short questions after one group), and only
# the tail runs per prompt.
DEEP_SPLIT_FROM = 768
DEEP_SPLIT_STEP = 64
DEEP_SPLIT_TAIL = 32
# Rows per suffix micro-batch (at most batch_size): fixed, so a GEMM's M never depends on the neighbours.
ROWS_PER_PASS = 4
# A suffix wider than this runs alone (one row per pass): a pass that wide is efficient by itself, and
# filling it up with copies to ROWS_PER_PASS rows cost a lone prompt (setwise, FIRST) 4x its compute.
BATCHED_WIDTH = 256
# Suffix widths are padded up to a multiple of this (a function of the prompt's own length).
WIDTH_BUCKET = 32
# The LM head runs on tiles of exactly this many rows.
HEAD_ROWS = 32


class TransformersBackend(HFTokenizerText):
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
        # Sliding-window layers trim their cache to the window: keep their prefixes short.
        self._deep_splits = "sliding_attention" not in (getattr(self.model.config, "layer_types", None) or ())

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
    def format_chat(self, user: str, system: str | None = None) -> str:
        template = self.tokenizer.chat_template
        if not template:
            return mark_plain((f"{system}\n\n" if system else "") + user + "\n", self.control_tokens)
        return render_chat(template, chat_messages(user, system, self.control_tokens),
                           bos_token=self.tokenizer.bos_token or "", eos_token=self.tokenizer.eos_token or "")

    # -- primitives -----------------------------------------------------------------------------
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        return self._choice_scores(prompts, choices, normalize=True)

    def choice_logits(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        """The raw logit of each choice's first token (RankT5-style read-outs), fp32 like the log-probs."""
        return self._choice_scores(prompts, choices, normalize=False)

    @torch.inference_mode()
    def _choice_scores(self, prompts: Sequence[str], choices: Sequence[str], normalize: bool) -> np.ndarray:
        start, used = time.perf_counter(), call_usage(self)
        if not prompts:
            return answered(self, np.zeros((0, len(choices)), dtype=np.float32), used)
        ids = [self._tokenize(p) for p in prompts]
        choice_ids = choice_token_ids(self._tokenize, choices)
        logprobs = self._logprobs(self._last_hidden_states(ids, used), normalize)
        cols = [torch.logsumexp(logprobs[:, c], dim=-1) for c in choice_ids]
        out = torch.stack(cols, dim=1).cpu().numpy().astype(np.float32)
        used.calls += len(prompts)
        used.prompt_tokens += sum(len(x) for x in ids)
        used.seconds += time.perf_counter() - start
        return answered(self, out, used)

    def _last_hidden_states(self, ids: list[list[int]], used: Usage) -> torch.Tensor:
        """Hidden state at the last token of every prompt, in input order: [n, hidden]."""
        return torch.stack([h[0] for h in self._hidden_at(ids, [[len(x) - 1] for x in ids], used)])

    def _split(self, first_wanted: int) -> int:
        """Prefix split of a prompt whose first needed hidden state is at ``first_wanted``: a property of
        that prompt alone, so its bits never depend on which prompts share the call."""
        if not self.prefix_reuse:
            return 0
        if first_wanted >= DEEP_SPLIT_FROM and self._deep_splits:
            return (first_wanted - DEEP_SPLIT_TAIL) // DEEP_SPLIT_STEP * DEEP_SPLIT_STEP
        return max((g for g in PREFIX_SPLITS if g <= first_wanted), default=0)

    def _rows(self, width: int) -> int:
        """Rows per pass for suffixes of ``width`` tokens: a property of the width, so of the prompt alone."""
        return max(1, min(self.batch_size, ROWS_PER_PASS)) if width <= BATCHED_WIDTH else 1

    def _hidden_at(self, ids: list[list[int]], want: list[list[int]], used: Usage) -> list[torch.Tensor]:
        """Hidden states (fp32) of sequence i at positions want[i], in input order.

        Batch-invariant: every pass that computes sequence i has a shape fixed by sequence i (see the
        module docstring), so its result does not depend on the other sequences."""
        splits = [self._split(min(w)) for w in want]
        groups: dict[tuple[int, ...], dict[int, list[int]]] = {}  # prefix -> suffix width -> prompts
        for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
            s = splits[i]
            width = -(-(len(ids[i]) - s) // WIDTH_BUCKET) * WIDTH_BUCKET
            groups.setdefault(tuple(ids[i][:s]), {}).setdefault(width, []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for prefix, by_width in groups.items():  # one prefix's KV cache alive at a time
            shared = len(prefix)
            cache = self.encode_prefix(list(prefix), used) if shared else None
            for width, members in by_width.items():
                rows = self._rows(width)
                for b in range(0, len(members), rows):
                    batch = members[b:b + rows]
                    hidden = self._run_fixed([ids[i][shared:] for i in batch], cache, shared, width, rows, used)
                    for row, i in enumerate(batch):
                        out[i] = hidden[row, [p - shared for p in want[i]]].to(torch.float32)
        return out

    def _run_fixed(self, suffixes: list[list[int]], prefix_cache, shared: int, width: int,
                   rows: int, used: Usage) -> torch.Tensor:
        """``run_suffixes`` on a fixed shape: exactly ``rows`` rows (copies of the first suffix fill the
        batch up) of exactly ``width`` tokens, with an explicit 4D mask; returns [rows, width, hidden]."""
        real = len(suffixes)
        suffixes = suffixes + [suffixes[0]] * (rows - real)
        input_ids = torch.full((rows, width), self._pad_id, dtype=torch.long)
        lengths = torch.tensor([len(s) for s in suffixes])
        for row, s in enumerate(suffixes):
            input_ids[row, :len(s)] = torch.tensor(s)
        q = torch.arange(width).view(1, width, 1)
        k = torch.arange(shared + width).view(1, 1, shared + width) - shared
        allowed = (k < 0) | ((k <= q) & (k < lengths.view(rows, 1, 1)))  # [rows, width, shared + width]
        config = self.model.config
        if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
            # Per-layer-type masks (and window-trimmed caches) are built by the model: give it the 2D mask.
            # Its causal-mask skip needs kv length == width, i.e. no prefix, and no padding in any row.
            mask = torch.zeros((rows, shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            for row, s in enumerate(suffixes):
                mask[row, shared:shared + len(s)] = 1
        else:  # a 4D mask is used as given: the same path for every batch, whoever shares it
            mask = allowed.unsqueeze(1)
            if getattr(config, "_attn_implementation", "sdpa") != "sdpa":
                mask = torch.zeros(mask.shape, dtype=self.model.dtype).masked_fill(
                    ~mask, torch.finfo(self.model.dtype).min)
        return self._decode_after(input_ids, mask, prefix_cache, shared, used,
                                  computed=sum(len(s) for s in suffixes[:real]))

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
        return self._decode_after(input_ids, mask, prefix_cache, shared, used,
                                  computed=sum(len(s) for s in suffixes))

    def _decode_after(self, input_ids: torch.Tensor, mask: torch.Tensor, prefix_cache, shared: int,
                      used: Usage, computed: int) -> torch.Tensor:
        """The decoder over ``input_ids`` [rows, width] after a shared prefix of ``shared`` tokens (a copy of
        its KV cache, one per row); counts one forward pass and ``computed`` tokens; the last hidden states."""
        rows, width = input_ids.shape
        kwargs = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(rows)
            kwargs[self._cache_arg] = cache
        positions = torch.arange(shared, shared + width).unsqueeze(0).expand(rows, -1)
        hidden = self._decoder(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                               position_ids=positions.to(self.device), use_cache=prefix_cache is not None,
                               **kwargs).last_hidden_state
        used.forward_passes += 1
        used.computed_tokens += computed
        return hidden

    def _logprobs(self, hidden: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """fp32 log-softmax over the vocabulary (``normalize=False``: the raw logits) for fp32 hidden states
        [m, hidden], in tiles of exactly HEAD_ROWS rows (a GEMM's bits depend on its row count, not on a row's
        neighbours)."""
        m = hidden.shape[0]
        padded = torch.zeros((-(-m // HEAD_ROWS) * HEAD_ROWS, hidden.shape[1]), dtype=hidden.dtype,
                             device=hidden.device)
        padded[:m] = hidden
        head = torch.nn.functional.linear
        logits = torch.cat([head(tile, self._head_weight, self._head_bias) for tile in padded.split(HEAD_ROWS)])[:m]
        return torch.log_softmax(logits, dim=-1) if normalize else logits

    @torch.inference_mode()
    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Sum of log P(continuation tokens | prompt) per pair: float64 [n] (query likelihood)."""
        start, used = time.perf_counter(), call_usage(self)
        prompt_ids = [self._tokenize(p) for p in prompts]
        cont_ids = [self._tokenize(c) for c in continuations]
        ids = [p + c for p, c in zip(prompt_ids, cont_ids)]
        want = [list(range(len(p) - 1, len(p) + len(c) - 1)) for p, c in zip(prompt_ids, cont_ids)]
        out = np.zeros(len(prompts))
        hidden = self._hidden_at(ids, want, used) if prompts else []
        if hidden:  # one tiled head pass over every wanted position of the call
            lp = self._logprobs(torch.cat(hidden))
            at = 0
            for i, c in enumerate(cont_ids):
                out[i] = lp[torch.arange(at, at + len(c)), torch.tensor(c, dtype=torch.long)].sum().item()
                at += len(c)
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
        # One prompt per generate call: batched greedy decoding left-pads prompts to their neighbours'
        # length and runs GEMMs whose row count depends on the batch, so its tokens would depend on them.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for b in range(0, len(order)):
            batch = order[b:b + 1]
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
