"""Language-model engines behind one protocol (see base.py); ``load_backend`` builds any of them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from rankwise.errors import ModelError
from rankwise.llm.protocol import Backend, EmbeddingBackend

__all__ = ["Backend", "EmbeddingBackend", "ENGINES", "KINDS", "load_backend", "load_backend_for"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "transformers", "seq2seq", "llamacpp", "openai", "vllm")


def load_backend(model: str, engine: str = "auto", dtype: str = "auto", *,
                 cache: "bool | str | Path | object" = False, **options) -> Backend:
    """Build the engine for ``model`` (a registry name, a local GGUF file or directory, or a hub id).

    engine="auto" takes the engine and dtype measured fastest for this model on this machine
    (``rankwise env``; cached per machine). ``cache``: False, True (the default SQLite file), a path,
    or an OutputCache; with a cache, repeated prompts cost nothing.
    Options go to the engine (batch_size, prefix_reuse, n_ctx, base_url, api_key, ...).
    """
    from rankwise.llm.models import resolve_model

    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    resolved = resolve_model(model) if engine != "openai" else _resolve_if_known(model)
    if engine == "auto" and _is_seq2seq(model, resolved):
        engine = "seq2seq"
    if engine == "auto":
        from rankwise.llm.auto import choose_engine

        engine, auto_dtype = choose_engine(model)
        dtype = auto_dtype if dtype == "auto" else dtype
        log.info("engine=auto chose %s (%s) for %s", engine, dtype, model)
    from rankwise.llm.profiles import apply_profile

    if engine in ("transformers", "seq2seq", "attention"):
        warn_if_short_of_memory(resolved, dtype)
    backend = apply_profile(_build(engine, model, resolved, dtype, options))
    backend.cache_key = resolved.cache_key if resolved is not None else backend.name
    if cache is not False and cache is not None:
        from rankwise.llm.cache import CachedBackend, open_cache

        store = open_cache(cache)  # None (and a warning) where the cache cannot be opened
        if store is not None:
            backend = CachedBackend(backend, store)
    return backend


def warn_if_short_of_memory(resolved, dtype: str) -> None:
    """Say what loading the model in process needs when this machine has less free (before it loads)."""
    from rankwise.llm.hardware import choose_dtype, dtype_name
    from rankwise.llm.memory import check_memory, memory_need, parameter_count, stored_dtype

    parameters = parameter_count(resolved.gguf_file, resolved.hf_dir) if resolved is not None else None
    if parameters:
        stored = None if resolved.gguf_file else stored_dtype(resolved.hf_dir)  # GGUF: a copy in the run dtype
        check_memory(resolved.name, memory_need(parameters, dtype_name(choose_dtype(dtype)), stored))


def _load_llm(model: str, *, engine: str = "auto", dtype: str = "auto", cache=False, **options) -> Backend:
    return load_backend(model, engine=engine, dtype=dtype, cache=cache, **options)


def _load_embedding(model: str, *, engine: str = "auto", dtype: str = "auto", cache=False, **options):
    """A bi-encoder; with a cache, its embeddings persist there (a second run embeds nothing)."""
    from rankwise.llm.cache import open_cache
    from rankwise.llm.engines.sentence_transformers import SentenceTransformerBackend

    return SentenceTransformerBackend(model, batch_size=options.get("batch_size", 64), cache=open_cache(cache))


def _load_crossencoder(model: str, *, engine: str = "auto", dtype: str = "auto", cache=False, **options):
    """A sentence-transformers cross-encoder in process, or (engine ``rerank-api``, or a model given as an
    http(s) URL) a reranker served over HTTP, whose scores persist in the cache."""
    from rankwise.llm.engines.remote_rerank import ENGINE as REMOTE, is_url, load_remote_reranker

    if engine == REMOTE or (engine == "auto" and is_url(model)):
        return load_remote_reranker(model, cache, **options)
    from rankwise.llm.engines.sentence_transformers import CrossEncoderBackend

    return CrossEncoderBackend(model, batch_size=options.pop("batch_size", 32), **options)


def _load_attention(model: str, *, engine: str = "auto", dtype: str = "auto", cache=False, **options) -> Backend:
    """transformers in eager attention: its weights are read, so no output cache applies."""
    from rankwise.errors import InputError

    if engine not in ("auto", "transformers"):
        raise InputError(f"attention methods run on the transformers engine only (got engine={engine!r})")
    options.setdefault("batch_size", 16)
    return load_backend(model, engine="transformers", dtype=dtype, cache=False, attn_implementation="eager",
                        **options)


KINDS: dict[str, Callable[..., object]] = {"llm": _load_llm, "embedding": _load_embedding,
                                           "crossencoder": _load_crossencoder, "attention": _load_attention}
"""What a method can need (``MethodInfo.needs``) and how to load it; add an entry for a kind of your own."""


def load_backend_for(kind: str, model: str, *, engine: str = "auto", dtype: str = "auto",
                     cache: "bool | str | Path | object" = False, **options):
    """The backend of ``kind`` (what a method needs: an LLM, an embedding model, a cross-encoder, or an LLM
    whose attention can be read) for ``model``. Options go to the engine."""
    if kind not in KINDS:
        raise ModelError(f"no backend of kind {kind!r} (kinds: {', '.join(KINDS)})")
    return KINDS[kind](model, engine=engine, dtype=dtype, cache=cache, **options)


def _resolve_if_known(model: str):
    """For a remote server the model need not exist here; a local one still lends its chat template."""
    from rankwise.llm.models import resolve_model

    try:
        return resolve_model(model)
    except ModelError:
        return None


def _is_seq2seq(model: str, resolved) -> bool:
    """An encoder-decoder model: by its config.json where it is on disk, else by its profile's engine."""
    import json

    from rankwise.llm.models import hub_snapshot
    from rankwise.llm.profiles import profile_for
    from rankwise.llm.engines.seq2seq import is_encoder_decoder

    folder = resolved.hf_dir or (hub_snapshot(resolved.hub_id) if resolved.hub_id else None)
    if folder is not None and (folder / "config.json").is_file():
        return is_encoder_decoder(json.loads((folder / "config.json").read_text()))
    profile = profile_for(model)
    return profile is not None and profile.engine == "seq2seq"


def _hf_source(model: str, resolved, stored_dtype: str = "float32"):
    """A Hugging Face directory (a GGUF file converted once, stored in ``stored_dtype``; a MiniCPM layer-wise
    reranker converted once to Llama) or hub id for the in-process engines."""
    from rankwise.llm.models import hf_dir_for_gguf, hub_snapshot
    from rankwise.llm.models.layerwise import hf_dir_for_layerwise, is_layerwise

    if resolved.kind != "causal-lm":
        raise ModelError(f"{model}: a {resolved.kind} model cannot run as a language model")
    folder = resolved.hf_dir or (hub_snapshot(resolved.hub_id) if resolved.hub_id else None)
    if folder is not None and is_layerwise(folder):
        return hf_dir_for_layerwise(folder)
    return resolved.hf_dir or (hf_dir_for_gguf(resolved.gguf_file, stored_dtype) if resolved.gguf_file else None) \
        or resolved.hub_id


def _run_dtype(dtype: str, options: dict) -> str:
    """The dtype the transformers engine will run in ("auto" resolved for its device)."""
    from rankwise.llm.hardware import choose_device, choose_dtype, dtype_name

    return dtype_name(choose_dtype(dtype, choose_device(options.get("device", "auto"))))


def _build(engine: str, model: str, resolved, dtype: str, options: dict) -> Backend:
    if engine == "seq2seq":
        from rankwise.llm.engines.seq2seq import Seq2SeqBackend

        options.pop("prefix_reuse", None)  # the encoder sees every prompt whole
        return Seq2SeqBackend(_hf_source(model, resolved), name=resolved.name, dtype=dtype, **options)
    if engine == "transformers":
        from rankwise.llm.engines.transformers import TransformersBackend

        return TransformersBackend(_hf_source(model, resolved, _run_dtype(dtype, options)), name=resolved.name,
                                   dtype=dtype, **options)
    if engine == "vllm":
        from rankwise.llm.engines.vllm import VLLMBackend

        options.pop("batch_size", None)  # vLLM schedules its own batches
        options.pop("prefix_reuse", None)
        return VLLMBackend(_hf_source(model, resolved), name=resolved.name, dtype=dtype, **options)
    if engine == "llamacpp":
        if resolved.gguf_file is None:
            raise ModelError(f"{model}: the llamacpp engine needs a GGUF file; this model has none "
                             "(use --engine transformers)")
        try:
            from rankwise.llm.engines.llamacpp import LlamaCppBackend
        except ImportError as exc:
            raise ModelError("the llamacpp engine needs llama-cpp-python: "
                             "pip install 'rankwise[llamacpp]'") from exc
        options.pop("batch_size", None)
        options.pop("prefix_reuse", None)
        return LlamaCppBackend(resolved.gguf_file, name=resolved.name, **options)
    from rankwise.llm.engines.openai import OpenAICompatBackend

    if "base_url" not in options:
        raise ModelError("the openai engine needs --base-url (an OpenAI-compatible server, e.g. "
                         "http://127.0.0.1:8080/v1)")
    options.pop("batch_size", None)
    options.pop("prefix_reuse", None)
    if resolved is not None and resolved.gguf_file is not None:
        options.setdefault("chat_template_from", resolved.gguf_file)
    return OpenAICompatBackend(model=resolved.name if resolved else model, **options)
