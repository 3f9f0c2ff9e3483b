"""A tiny randomly initialised bge-reranker-v2-minicpm-layerwise checkpoint (the hub model's config.json keys and
weight names, with the Qwen tokenizer), and its score computed the way FlagEmbedding's remote code computes it
(``LayerWiseMiniCPMForCausalLM``, head_type simple), written out in plain torch: the reference the converted
Llama directory is checked against. No model files, no hub, no remote code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

CONFIG = {"architectures": ["LayerWiseMiniCPMForCausalLM"], "model_type": "minicpm", "head_type": "simple",
          "head_multi": True, "start_layer": 1, "num_hidden_layers": 4, "hidden_size": 32, "intermediate_size": 64,
          "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_act": "silu", "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 4096, "scale_emb": 12,
          "scale_depth": 1.4, "dim_model_base": 256, "pretraining_tp": 1, "attention_bias": False,
          "bos_token_id": 1, "eos_token_id": 2}


def save_tiny_layerwise(path: Path, tokenizer, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write config.json, model.safetensors (one score head per layer from start_layer on) and the tokenizer at
    ``path``; returns the weights."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    c = {**CONFIG, "vocab_size": len(tokenizer)}
    h, f = c["hidden_size"], c["intermediate_size"]
    weights = {"model.embed_tokens.weight": torch.randn(c["vocab_size"], h) * 0.1,
               "model.norm.weight": 1 + 0.1 * torch.randn(h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            weights[p + f"self_attn.{name}.weight"] = torch.randn(h, h) * 0.2
        weights[p + "mlp.gate_proj.weight"] = torch.randn(f, h) * 0.2
        weights[p + "mlp.up_proj.weight"] = torch.randn(f, h) * 0.2
        weights[p + "mlp.down_proj.weight"] = torch.randn(h, f) * 0.2
        weights[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(h)
        weights[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(h)
    for j in range(c["num_hidden_layers"] - c["start_layer"] + 1):
        weights[f"lm_head.{j}.linear_head.weight"] = torch.randn(1, h)
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(c, indent=2))
    tokenizer.save_pretrained(path)
    return weights


def reference_score(weights: dict[str, torch.Tensor], ids: list[int], layer: int) -> float:
    """The score of layer ``layer`` on the last of ``ids``, as the remote code computes it: embeddings times
    scale_emb, each residual branch times scale_depth / sqrt(num_hidden_layers), the final norm of the hidden
    state after ``layer`` layers, then that layer's one-output head."""
    c = CONFIG
    heads, n = c["num_attention_heads"], len(ids)
    d = c["hidden_size"] // heads
    scale = c["scale_depth"] / math.sqrt(c["num_hidden_layers"])

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rms_norm_eps"]) * w

    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(torch.arange(n).float(), inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: [heads, n, d]
        half = torch.cat((-x[..., d // 2:], x[..., :d // 2]), -1)
        return x * cos + half * sin

    causal = torch.full((n, n), float("-inf")).triu(1)
    h = weights["model.embed_tokens.weight"][ids] * c["scale_emb"]
    for i in range(layer):
        w = {k.split(f"model.layers.{i}.", 1)[1]: v for k, v in weights.items() if k.startswith(f"model.layers.{i}.")}
        x = rms(h, w["input_layernorm.weight"])
        q, k, v = ((x @ w[f"self_attn.{m}_proj.weight"].T).view(n, heads, d).transpose(0, 1) for m in "qkv")
        att = torch.softmax(rope(q) @ rope(k).transpose(1, 2) / math.sqrt(d) + causal, -1) @ v
        h = h + (att.transpose(0, 1).reshape(n, -1) @ w["self_attn.o_proj.weight"].T) * scale
        x = rms(h, w["post_attention_layernorm.weight"])
        mlp = torch.nn.functional.silu(x @ w["mlp.gate_proj.weight"].T) * (x @ w["mlp.up_proj.weight"].T)
        h = h + (mlp @ w["mlp.down_proj.weight"].T) * scale
    head = weights[f"lm_head.{layer - c['start_layer']}.linear_head.weight"]
    return (rms(h, weights["model.norm.weight"])[-1] @ head.T).item()
