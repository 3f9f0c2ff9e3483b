"""Encoder-decoder engine (T5, Flan-T5, monoT5, duoT5, BART ...): the primitives read from the decoder.

- ``choice_logprobs``: the log-probability of each choice as the decoder's next token, after the decoder
  start token and the answer prefix if any (monoT5: P("true") at the first step); ``choice_logits``: the
  same token's raw logit (RankT5);
- ``continuation_logprobs``: the sum of log P(continuation tokens | prompt), the continuation being the
  decoder's target (query likelihood, as UPR scores passages with T5);
- ``generate``: greedy decoding.

There is no chat template: ``format_chat`` returns the text and ends it with ``DECODER``. What a method
appends after that (an answer prefix such as "Passage") goes to the decoder, not the encoder, as
llm-rankers primes Flan-T5's decoder. A prompt without the mark is all encoder input.
Batches are sorted by encoder length and padded once; the LM head runs in fp32 whatever the model's dtype
(bf16 logits round relevance scores into ties). Usage is counted as the transformers engine counts it:
``prompt_tokens`` are the tokens of the prompts (encoder input with its special tokens, plus any decoder
prefix), ``computed_tokens`` the encoder and decoder positions the model ran, ``forward_passes`` the
model calls (a generation step each).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rankwise.errors import ModelError
from rankwise.llm.engines.hf_text import HFTokenizerText
from rankwise.llm.protocol import (PLAIN_START, answered, call_usage, choice_token_ids, cut_at_stop, hf_control_tokens,
                                   mark_plain, tokenize_marked)
from rankwise.types import Usage

# Ends format_chat's text: the encoder input is what comes before the last mark, the decoder prefix after.
DECODER = "<|decoder|>"


class Seq2SeqBackend(HFTokenizerText):
    """An encoder-decoder LM from a hub id or a local directory (``AutoModelForSeq2SeqLM``)."""

    engine = "seq2seq"

    def __init__(self, model: str | Path, *, name: str | None = None, dtype: str | torch.dtype = "auto",
                 device: str = "auto", batch_size: int = 16, torch_model: torch.nn.Module | None = None,
                 tokenizer=None):
        from rankwise.llm import hardware

        self.device = hardware.choose_device(device)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else hardware.choose_dtype(dtype, self.device)
        self.dtype = str(torch_dtype).replace("torch.", "")
        self.name = name or str(model)
        self.batch_size = batch_size
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)
        if torch_model is None or tokenizer is None:
            torch_model, tokenizer = self._load(model, torch_dtype)
        if not getattr(torch_model.config, "is_encoder_decoder", False):
            raise ModelError(f"{self.name}: not an encoder-decoder model (use engine='transformers')")
        self.model = torch_model.to(device=self.device, dtype=torch_dtype).eval()
        if torch_dtype != torch.float32:
            _fp32_head(self.model)
        self.tokenizer = tokenizer
        self.control_tokens = hf_control_tokens(tokenizer)
        plain, full = tokenizer("x", add_special_tokens=False)["input_ids"], tokenizer("x")["input_ids"]
        at = full.index(plain[0])
        self._around = (full[:at], full[at + len(plain):])  # the special tokens the tokenizer adds (T5: </s>)
        config = self.model.config
        self._start_id = config.decoder_start_token_id
        if self._start_id is None:
            raise ModelError(f"{self.name}: the model config names no decoder_start_token_id")
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id or 0

    @staticmethod
    def _load(model: str | Path, torch_dtype: torch.dtype):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            lm = AutoModelForSeq2SeqLM.from_pretrained(str(model), dtype=torch_dtype)
            tok = AutoTokenizer.from_pretrained(str(model))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model}: cannot load as an encoder-decoder model ({exc})") from exc
        return lm, tok

    # -- text helpers ---------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        """Ids of ``text``; control-token strings that ``format_chat`` marked in user text stay plain text."""
        return tokenize_marked(text, lambda piece, specials: self.tokenizer(
            piece, add_special_tokens=False)["input_ids"] if specials else self._plain(piece))

    def _plain(self, piece: str) -> list[int]:
        """A control-token string as text. Sentencepiece vocabularies may hold it as an ordinary piece too
        (T5's "</s>"): then it is spelt character by character."""
        ids = self.tokenizer(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        control = set(self.tokenizer.all_special_ids)
        if control.isdisjoint(ids):
            return ids
        return [i for ch in piece for i in self.tokenizer(ch, add_special_tokens=False)["input_ids"]
                if i not in control]

    def _split(self, prompt: str) -> tuple[list[int], list[int]]:
        """Encoder ids (with the tokenizer's special tokens, e.g. T5's </s>) and decoder-prefix ids."""
        encoder, mark, prefix = prompt.rpartition(DECODER)
        if not mark:
            encoder, prefix = prompt, ""
        if PLAIN_START in encoder:  # user text with control-token strings: the same special tokens around it
            before, after = self._around
            encoder_ids = before + self._tokenize(encoder) + after
        else:
            encoder_ids = self.tokenizer(encoder)["input_ids"]
        return encoder_ids, self._tokenize(prefix) if prefix else []

    def format_chat(self, user: str, system: str | None = None) -> str:
        """Plain text (no chat template), marked where the decoder takes over."""
        return mark_plain((f"{system}\n\n" if system else "") + user, self.control_tokens) + DECODER

    # -- primitives -----------------------------------------------------------------------------
    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        return self._choice_scores(prompts, choices, normalize=True)

    def choice_logits(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        """The raw logit of each choice as the decoder's next token (RankT5: ``<extra_id_10>`` at the first
        step), fp32."""
        return self._choice_scores(prompts, choices, normalize=False)

    @torch.inference_mode()
    def _choice_scores(self, prompts: Sequence[str], choices: Sequence[str], normalize: bool) -> np.ndarray:
        start, used = time.perf_counter(), call_usage(self)
        if not prompts:
            return answered(self, np.zeros((0, len(choices)), dtype=np.float32), used)
        split = [self._split(p) for p in prompts]
        choice_ids = choice_token_ids(self._tokenize, choices)
        decoder = [[self._start_id] + prefix for _, prefix in split]
        logprobs = self._logprobs_at([e for e, _ in split], decoder, [[len(d) - 1] for d in decoder], used,
                                     normalize)
        rows = torch.stack([lp[0] for lp in logprobs])
        out = torch.stack([torch.logsumexp(rows[:, c], dim=-1) for c in choice_ids], dim=1)
        out = out.cpu().numpy().astype(np.float32)
        self._count(split, start, used)
        return answered(self, out, used)

    @torch.inference_mode()
    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        """Sum of log P(continuation tokens | prompt) per pair: float64 [n] (query likelihood)."""
        start, used = time.perf_counter(), call_usage(self)
        split = [self._split(p) for p in prompts]
        targets = [self._tokenize(c) for c in continuations]
        decoder = [[self._start_id] + prefix + target[:-1] for (_, prefix), target in zip(split, targets)]
        want = [list(range(len(p), len(p) + len(t))) for (_, p), t in zip(split, targets)]
        logprobs = self._logprobs_at([e for e, _ in split], decoder, want, used)
        out = np.array([lp[torch.arange(len(t)), torch.tensor(t, dtype=torch.long)].sum().item()
                        for lp, t in zip(logprobs, targets)], dtype=np.float64)
        self._count([(e, p + t) for (e, p), t in zip(split, targets)], start, used)
        return answered(self, out, used)

    def _logprobs_at(self, encoder: list[list[int]], decoder: list[list[int]],
                     want: list[list[int]], used: Usage, normalize: bool = True) -> list[torch.Tensor]:
        """fp32 log-softmax rows (``normalize=False``: raw logits) [len(want[i]), vocab] at decoder positions
        want[i], in input order; batches of sequences sorted by encoder length, each padded once."""
        order = sorted(range(len(encoder)), key=lambda i: len(encoder[i]))
        out: list[torch.Tensor] = [torch.empty(0)] * len(encoder)
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            enc_ids, enc_mask = self._pad([encoder[i] for i in batch])
            dec_ids, dec_mask = self._pad([decoder[i] for i in batch])
            logits = self.model(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=dec_ids,
                                decoder_attention_mask=dec_mask).logits
            used.forward_passes += 1
            used.computed_tokens += sum(len(encoder[i]) + len(decoder[i]) for i in batch)
            for row, i in enumerate(batch):
                rows = logits[row, want[i]].float()
                out[i] = torch.log_softmax(rows, dim=-1) if normalize else rows
        return out

    def _pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their attention mask, on the model's device."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[row, :len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _count(split: list[tuple[list[int], list[int]]], start: float, used: Usage) -> None:
        used.calls += len(split)
        used.prompt_tokens += sum(len(e) + len(d) for e, d in split)
        used.seconds += time.perf_counter() - start

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Greedy decoding; the decoder continues after its start token and the prompt's decoder prefix."""
        start, used = time.perf_counter(), call_usage(self)
        outputs: list[str] = [""] * len(prompts)
        split = [self._split(p) for p in prompts]
        order = sorted(range(len(split)), key=lambda i: (len(split[i][1]), len(split[i][0])))
        b = 0
        while b < len(order):
            # one batch shares its decoder-prefix length, so generated tokens start at one column
            batch = [order[b]]
            while (len(batch) < self.batch_size and b + len(batch) < len(order)
                   and len(split[order[b + len(batch)]][1]) == len(split[batch[0]][1])):
                batch.append(order[b + len(batch)])
            b += len(batch)
            enc_ids, enc_mask = self._pad([split[i][0] for i in batch])
            prefix = torch.tensor([[self._start_id] + split[i][1] for i in batch], dtype=torch.long,
                                  device=self.device)
            gen = self.model.generate(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=prefix,
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self._pad_id, stop_strings=list(stop) if stop else None,
                                      tokenizer=self.tokenizer if stop else None)
            new = gen[:, prefix.shape[1]:]
            for row, i in enumerate(batch):
                toks = [t for t in new[row].tolist() if t != self._pad_id]
                outputs[i] = cut_at_stop(self.tokenizer.decode(toks, skip_special_tokens=True), stop)
                used.completion_tokens += len(toks)
            used.forward_passes += new.shape[1]
            used.computed_tokens += sum(len(split[i][0]) for i in batch) + prefix.numel() + new.numel()
        self._count(split, start, used)
        return answered(self, outputs, used)


def _fp32_head(model: torch.nn.Module) -> None:
    """Give a half-precision model an untied fp32 copy of its LM head, fed fp32 hidden states."""
    head = model.get_output_embeddings()
    fp32 = torch.nn.Linear(head.in_features, head.out_features, bias=head.bias is not None,
                           dtype=torch.float32, device=head.weight.device)
    with torch.no_grad():
        fp32.weight.copy_(head.weight.float())
        if head.bias is not None:
            fp32.bias.copy_(head.bias.float())
    fp32.register_forward_pre_hook(lambda _module, args: (args[0].float(),))
    model.set_output_embeddings(fp32)


ENCODER_DECODER_TYPES = ("t5", "mt5", "umt5", "longt5", "bart", "mbart")


def is_encoder_decoder(config: dict) -> bool:
    """Whether a model's config.json describes an encoder-decoder LM."""
    return bool(config.get("is_encoder_decoder")) or config.get("model_type") in ENCODER_DECODER_TYPES
