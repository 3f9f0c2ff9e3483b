"""The ``attention`` primitive of the transformers engine: how much attention the tokens of a suffix pay
to each token of a shared prefix (In-Context Reranking reads it; Chen et al., ICLR 2025).

``prefix_attention(backend, segments, suffixes, layers)`` runs two forward passes whatever the number of
suffixes: the prefix (the segments, tokenised one by one and concatenated) once, keeping its KV cache, then
every suffix as one batch over that cache. Causal attention makes the prefix's keys independent of what
follows, so the suffixes (a query and a content-free query) share it exactly. Only the suffix pass reads
attention, in eager attention and only on the chosen layers, through forward hooks that keep the summed
heads of the suffix rows: [suffixes, suffix tokens, prefix + suffix tokens] per layer, never the full
square. The model runs the prefix in SDPA (no weights needed there) and the suffix pass in eager, switched
for the call and restored after, whichever implementation the backend was loaded with.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, Sequence

import numpy as np
import torch

from rankwise.errors import InputError, ModelError
from rankwise.llm.protocol import answered, call_usage, tokenize_marked


def select_layers(spec: Sequence[int] | str | None, n_layers: int) -> list[int]:
    """Layer indices from None or "all" (every layer), a slice "a:b" ("-8:" = the last 8), a list "3,5,7",
    or a sequence of ints; negative indices count from the end. Unknown layers are an InputError."""
    if spec is None or spec == "all":
        return list(range(n_layers))
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                start, _, stop = text.partition(":")
                picked = list(range(n_layers))[slice(int(start) if start.strip() else None,
                                                     int(stop) if stop.strip() else None)]
            else:
                picked = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"layers {spec!r}: expected 'all', a slice such as '12:' or a list such as '3,5'")
    else:
        picked = [int(x) for x in spec]
    bad = [i for i in picked if not -n_layers <= i < n_layers]
    if bad or not picked:
        raise InputError(f"layers {spec!r}: the model has {n_layers} layers (0..{n_layers - 1}); got {bad or 'none'}")
    return sorted({i % n_layers for i in picked})


def attention_layers(backend) -> list[torch.nn.Module]:
    """The self-attention module of every decoder layer of a transformers backend's model."""
    layers = getattr(backend.model.get_decoder(), "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
        raise ModelError(f"{backend.name}: no decoder layers with a self_attn module to read attention from")
    return [layer.self_attn for layer in layers]


@torch.inference_mode()
def prefix_attention(backend, segments: Sequence[str], suffixes: Sequence[str],
                     layers: Sequence[int] | str | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Attention from each suffix to each prefix token, and each segment's token span in the prefix.

    Returns float64 [len(suffixes), prefix tokens]: the attention weights of the suffix's tokens (their mean
    over the suffix's tokens), summed over the heads and the chosen layers; and [start, end) per segment.
    The scores' usage counts 2 forward passes, one call per suffix, and the tokens.
    """
    start_time = time.perf_counter()
    def tokenize(text: str) -> list[int]:  # control-token strings marked in user text stay plain text
        return tokenize_marked(text, lambda piece, specials: backend.tokenizer(
            piece, add_special_tokens=False, split_special_tokens=not specials)["input_ids"])

    prefix: list[int] = []
    spans: list[tuple[int, int]] = []
    for segment in segments:
        ids = tokenize(segment)
        spans.append((len(prefix), len(prefix) + len(ids)))
        prefix += ids
    suffix_ids = [tokenize(s) for s in suffixes]
    if not prefix or not suffix_ids or not all(suffix_ids):
        raise InputError("prefix_attention needs a non-empty prefix and non-empty suffixes")
    modules = attention_layers(backend)
    chosen = [modules[i] for i in select_layers(layers, len(modules))]
    model, n = backend.model, len(prefix)

    used = call_usage(backend)
    with _implementation(model, "sdpa"):
        cache = backend.encode_prefix(prefix, used)

    rows: list[torch.Tensor] = []

    def keep_suffix_rows(module, args, output) -> None:
        weights = output[1]
        if weights is None:
            raise ModelError(f"{backend.name}: the attention layers returned no weights (eager attention needed)")
        rows.append(weights.float().sum(dim=1))  # [suffixes, suffix width, n + width]: heads summed

    hooks = [m.register_forward_hook(keep_suffix_rows) for m in chosen]
    try:
        with _implementation(model, "eager"):
            backend.run_suffixes(suffix_ids, cache, n, used)
    finally:
        for hook in hooks:
            hook.remove()
    total = torch.stack(rows).sum(dim=0)  # layers summed
    scores = torch.stack([total[i, : len(s), :n].mean(dim=0) for i, s in enumerate(suffix_ids)])

    used.calls += len(suffixes)
    used.prompt_tokens += len(suffixes) * n + sum(len(s) for s in suffix_ids)
    used.seconds += time.perf_counter() - start_time
    return answered(backend, scores.double().cpu().numpy(), used), spans


@contextlib.contextmanager
def _implementation(model, name: str) -> Iterator[None]:
    """Run the model with attention implementation ``name`` inside the block, then restore its own."""
    own = model.config._attn_implementation
    if own != name:
        model.set_attn_implementation(name)
    try:
        yield
    finally:
        if own != name:
            model.set_attn_implementation(own)
