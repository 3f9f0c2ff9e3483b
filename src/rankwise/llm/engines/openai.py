"""OpenAI-compatible HTTP engine: vLLM, llama.cpp's server, llama-cpp-python's server, Ollama, OpenAI.

Everything goes through the legacy ``/v1/completions`` endpoint with prompts already rendered by
``format_chat``, so one prompt string means the same thing here as on the in-process engines.

- ``generate``: temperature 0, ``max_tokens``, ``stop``. Servers differ in their other defaults
  (llama-cpp-python's server applies ``repeat_penalty=1.1``): ``extra_body`` adds fields to every request,
  e.g. ``{"repeat_penalty": 1.0}`` for plain greedy decoding there (OpenAI itself rejects unknown fields).
- ``choice_logprobs``: one token (``max_tokens=1``) with ``logprobs=top_logprobs`` (default 20); a choice's
  score is the logsumexp of its variants' entries in the first token's top-k. A choice none of whose
  variants is listed gets a floor: its true log-probability is at most ``ub = min(smallest listed
  logprob, log(1 - listed probability mass))``; we report ``ub - log 2``, below every listed token.
  Variants are matched by the text of their first token, found with the server's tokenizer (llama.cpp's
  ``/tokenize``, vLLM's ``/tokenize``, llama-cpp-python's ``/extras/tokenize``); without one a variant
  is matched as a whole string (so give single-token variants).
- ``count_tokens`` / ``truncate`` use the server's tokenizer too; where there is none they estimate from
  whitespace words (``exact_tokens`` is then False and a warning is logged once).
- ``format_chat`` renders a chat template given as a string (``chat_template``) or read from a local GGUF
  file or Hugging Face directory (``chat_template_from``); with neither it falls back to the plain
  "system, blank line, user" layout of a model without a template (with a warning, once). The server
  tokenizes the prompt itself, parsing control tokens anywhere in it, so the turn's text (documents, query)
  has every control-token-like string (``<|im_end|>``, ``</s>``, ``[INST]``, ...) broken with a zero-width
  joiner first (``neutralize_control_tokens``): a document cannot close the user turn.

Requests of one call go out in parallel (``concurrency`` threads); each retries ``max_retries`` times with
exponential backoff on connection errors, timeouts, HTTP 429 and 5xx (``rankwise.llm.engines.http``), then
raises a ``RankwiseError``.
Usage: ``prompt_tokens`` / ``completion_tokens`` come from the server's ``usage``; the server's prefix
cache is invisible from here, so ``computed_tokens`` counts every prompt token.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from rankwise.errors import ModelError, RankwiseError
from rankwise.llm.engines.http import JsonHttp
from rankwise.llm.protocol import (answered, call_usage, chat_messages, neutralize_control_tokens, render_chat,
                                   score_from_top_logprobs, split_choice)
from rankwise.types import Usage

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

WORDS_TO_TOKENS = 1.3  # rough tokens per whitespace word, used only without a server tokenizer


def read_chat_template(source: str | Path) -> tuple[str | None, str, str]:
    """(template, bos_token, eos_token) from a GGUF file or a Hugging Face model directory."""
    path = Path(source)
    if path.is_file() and path.suffix == ".gguf":
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields

        def token(key: str) -> str:
            field = fields.get(key)
            return fields["tokenizer.ggml.tokens"].contents(int(field.contents())) if field else ""

        tmpl = fields.get("tokenizer.chat_template")
        return (tmpl.contents() if tmpl else None, token("tokenizer.ggml.bos_token_id"),
                token("tokenizer.ggml.eos_token_id"))
    if path.is_dir():
        config = path / "tokenizer_config.json"
        data = json.loads(config.read_text()) if config.is_file() else {}
        template = data.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        jinja = path / "chat_template.jinja"
        if template is None and jinja.is_file():
            template = jinja.read_text()

        def special(key: str) -> str:
            value = data.get(key) or ""
            return value.get("content", "") if isinstance(value, dict) else value

        return template, special("bos_token"), special("eos_token")
    raise ModelError(f"{path}: no GGUF file or model directory to read a chat template from")


class OpenAICompatBackend:
    """A model served over an OpenAI-compatible HTTP API (``base_url`` like http://host:8080/v1)."""

    engine = "openai"
    dtype = "remote"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, concurrency: int = 4, *, name: str | None = None,
                 chat_template: str | None = None, chat_template_from: str | Path | None = None,
                 top_logprobs: int = 20, backoff: float = 0.5, extra_body: dict | None = None):
        self.base_url = base_url.rstrip("/")
        self.root_url = self.base_url.removesuffix("/v1")
        self.model = model
        self.name = name or model
        self.top_logprobs = top_logprobs
        self.extra_body = dict(extra_body or {})
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self._http = JsonHttp(timeout=timeout, max_retries=max_retries, backoff=backoff,
                              concurrency=concurrency,
                              headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        self.bos_token = self.eos_token = ""
        if chat_template is None and chat_template_from is not None:
            chat_template, self.bos_token, self.eos_token = read_chat_template(chat_template_from)
        self.chat_template = chat_template
        self._tokenizer_api: tuple[str, str, Callable[[str], dict], tuple[str, ...]] | None = None
        self._special_prefix: list[int] = []
        self.exact_tokens: bool | None = None  # None until the server has been asked
        self._first_token_text: dict[str, str] = {}
        self._warned_no_template = False
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "OpenAICompatBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _post(self, url: str, body: dict, optional: bool = False) -> dict | None:
        """POST with retries; ``optional``: None when the server lacks the endpoint."""
        return self._http.post(url, body, optional)

    def _parallel(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return self._http.parallel(fn, items)

    def _complete(self, prompt: str, **options) -> dict:
        body = {"model": self.model, "prompt": prompt, "temperature": 0.0, **self.extra_body, **options}
        data = self._post(f"{self.base_url}/completions", body)
        if not data.get("choices"):
            raise RankwiseError(f"{self.base_url}/completions: the answer has no choices: {str(data)[:200]}")
        return data

    # -- the server's tokenizer -----------------------------------------------------------------
    def _find_tokenizer(self) -> None:
        """Probe llama-cpp-python's /extras/tokenize, then /tokenize (llama.cpp server, vLLM)."""
        if self.exact_tokens is not None:
            return
        candidates = (
            ("/extras/tokenize", "/extras/detokenize", lambda t: {"model": self.model, "input": t},
             ("text",)),
            ("/tokenize", "/detokenize",
             lambda t: {"model": self.model, "content": t, "prompt": t, "add_special": False,
                        "add_special_tokens": False},
             ("content", "prompt")),
        )
        for tok_path, detok_path, body, keys in candidates:
            data = self._post(self.root_url + tok_path, body(""), optional=True)
            if data is not None and isinstance(data.get("tokens"), list):
                self._tokenizer_api = (tok_path, detok_path, body, keys)
                self._special_prefix = data["tokens"]
                self.exact_tokens = True
                return
        self.exact_tokens = False
        log.warning("%s has no tokenize endpoint: token counts are estimated from whitespace words",
                    self.root_url)

    def _tokenize(self, text: str) -> list[int]:
        tok_path, _, body, _ = self._tokenizer_api
        ids = self._post(self.root_url + tok_path, body(text))["tokens"]
        n = len(self._special_prefix)
        return ids[n:] if n and ids[:n] == self._special_prefix else ids

    def _detokenize(self, ids: list[int]) -> str:
        _, detok_path, _, keys = self._tokenizer_api
        data = self._post(self.root_url + detok_path, {"model": self.model, "tokens": ids})
        return next(data[k] for k in keys if k in data)

    def count_tokens(self, text: str) -> int:
        self._find_tokenizer()
        if self.exact_tokens:
            return len(self._tokenize(text))
        return math.ceil(len(text.split()) * WORDS_TO_TOKENS)

    def truncate(self, text: str, max_tokens: int) -> str:
        self._find_tokenizer()
        if self.exact_tokens:
            ids = self._tokenize(text)
            return text if len(ids) <= max_tokens else self._detokenize(ids[:max_tokens])
        words = text.split()
        keep = int(max_tokens / WORDS_TO_TOKENS)
        return text if len(words) <= keep else " ".join(words[:keep])

    def format_chat(self, user: str, system: str | None = None) -> str:
        if not self.chat_template:
            if not self._warned_no_template:
                log.warning("no chat template for %s (pass chat_template or chat_template_from): "
                            "using a plain prompt", self.name)
                self._warned_no_template = True
            return neutralize_control_tokens((f"{system}\n\n" if system else "") + user) + "\n"
        user, system = neutralize_control_tokens(user), neutralize_control_tokens(system) if system else system
        return render_chat(self.chat_template, chat_messages(user, system),
                           bos_token=self.bos_token, eos_token=self.eos_token)

    # -- primitives -----------------------------------------------------------------------------
    def _variant_keys(self, choices: Sequence[str]) -> list[list[str]]:
        """Per choice, the top_logprobs keys of its variants (the text of each variant's first token)."""
        self._find_tokenizer()
        out: list[list[str]] = []
        for choice in choices:
            keys: list[str] = []
            for variant in split_choice(choice):
                if variant not in self._first_token_text:
                    ids = self._tokenize(variant) if self.exact_tokens else []
                    self._first_token_text[variant] = self._detokenize(ids[:1]) if ids else variant
                key = self._first_token_text[variant]
                if key not in keys:
                    keys.append(key)
            if not keys:
                raise ValueError(f"choice {choice!r} has no tokens")
            out.append(keys)
        return out

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        start, used = time.perf_counter(), call_usage(self)
        if not prompts:
            return answered(self, np.zeros((0, len(choices)), dtype=np.float32), used)
        keys = self._variant_keys(choices)

        def score(prompt: str) -> tuple[list[float], dict]:
            data = self._complete(prompt, max_tokens=1, logprobs=self.top_logprobs)
            top = first_token_top_logprobs(data["choices"][0].get("logprobs") or {})
            if not top:
                raise RankwiseError(f"{self.base_url}/completions returned no top_logprobs: this server "
                                    "cannot score choices (try another engine)")
            return score_from_top_logprobs(top, keys), data.get("usage") or {}

        results = self._parallel(score, list(prompts))
        prompt_tokens = sum(u.get("prompt_tokens", 0) for _, u in results)
        used.calls += len(prompts)
        used.forward_passes += len(prompts)
        used.prompt_tokens += prompt_tokens
        used.computed_tokens += prompt_tokens
        used.completion_tokens += sum(u.get("completion_tokens", 0) for _, u in results)
        used.seconds += time.perf_counter() - start
        return answered(self, np.array([row for row, _ in results], dtype=np.float32).reshape(len(prompts), len(choices)), used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        """Greedy continuation of each prompt (temperature 0), cut by the server at ``stop``."""
        start, used = time.perf_counter(), call_usage(self)
        options: dict = {"max_tokens": max_new_tokens}
        if stop:
            options["stop"] = list(stop)

        def one(prompt: str) -> tuple[str, dict]:
            data = self._complete(prompt, **options)
            return data["choices"][0].get("text") or "", data.get("usage") or {}

        results = self._parallel(one, list(prompts))
        prompt_tokens = sum(u.get("prompt_tokens", 0) for _, u in results)
        completion = [u.get("completion_tokens", 0) for _, u in results]
        used.calls += len(prompts)
        used.forward_passes += sum(max(c, 1) for c in completion)
        used.prompt_tokens += prompt_tokens
        used.computed_tokens += prompt_tokens + sum(completion)
        used.completion_tokens += sum(completion)
        used.seconds += time.perf_counter() - start
        return answered(self, [text for text, _ in results], used)


def first_token_top_logprobs(logprobs: dict) -> dict[str, float] | None:
    """{token text: logprob} of the first generated token, from either shape servers answer with:
    the legacy completions one (OpenAI, vLLM, llama-cpp-python: ``top_logprobs: [{text: lp}]``) or the
    chat one that llama.cpp's server uses (``content: [{top_logprobs: [{token, logprob}]}]``)."""
    top = logprobs.get("top_logprobs")
    if top:
        return top[0]
    content = logprobs.get("content")
    if content:
        return {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []}
    return None
