"""bge-reranker-v2-minicpm-layerwise without its remote code: the checkpoint converted once into a plain Llama
directory whose "Yes" logit is the score of the chosen layer.

FlagEmbedding's ``LayerWiseMiniCPMForCausalLM`` (the hub repository's remote code, ``head_type: simple``,
``head_multi: true``) scores a prompt with the one-output linear head of layer L (``cutoff_layers``, 28 by
default) applied to the final norm of the hidden state after the first L decoder layers, at the last token.
MiniCPM is Llama plus three linear scalings, so they fold into the weights: the embeddings times
``scale_emb``, and each residual branch (``o_proj``, ``down_proj``) times ``scale_depth / sqrt(num_hidden_layers)``.
The converted model keeps the first L layers and the final norm; its LM head is zero except in the row of the
answer token ("Yes"), which holds layer L's score head. So the raw "Yes" logit of the converted model
(``pointwise.logit``) is the reference score, and only L of the 40 layers run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
from pathlib import Path

from rankwise.errors import ModelError
from rankwise.llm.models.catalogue import cache_dir, cache_required
from rankwise.llm.models.fetching import _lock, _publish_dir
from rankwise.llm.models.inventory import touch_last_use

logger = logging.getLogger(__name__)

ARCHITECTURE = "LayerWiseMiniCPMForCausalLM"
DEFAULT_CUTOFF_LAYER = 28  # FlagEmbedding's README and model card: compute_score(..., cutoff_layers=[28])
_TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                    "*.model", "chat_template*")


def is_layerwise(folder: Path) -> bool:
    """Whether ``folder`` holds a MiniCPM layer-wise reranker (by its config.json)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return ARCHITECTURE in (config.get("architectures") or ())


def hf_dir_for_layerwise(folder: Path, cutoff_layer: int = DEFAULT_CUTOFF_LAYER, token: str = "Yes") -> Path:
    """The Llama directory converted once from the layer-wise checkpoint in ``folder``, scoring with layer
    ``cutoff_layer`` as the logit of ``token``; cached as ``cache_dir()/hf/minicpm-layerwise-L<layer>-<key>/``."""
    folder = folder.resolve()
    key = hashlib.sha256(f"{folder}\0{token}".encode()).hexdigest()[:8]
    target = cache_dir() / "hf" / f"minicpm-layerwise-L{cutoff_layer}-{key}"
    if not (target / "config.json").is_file():
        with cache_required(target, "the converted layer-wise reranker"), _lock(target):
            if not (target / "config.json").is_file():
                _convert(folder, target, cutoff_layer, token)
    touch_last_use(target)
    return target


def llama_config(config: dict, cutoff_layer: int) -> dict:
    """The Llama config.json of the first ``cutoff_layer`` layers of a layer-wise MiniCPM ``config``."""
    if config.get("head_type") != "simple" or not config.get("head_multi"):
        raise ModelError(f"rankwise converts layer-wise rerankers with one score head per layer (head_type simple, "
                         f"head_multi true), not head_type {config.get('head_type')!r}")
    if config.get("rope_scaling") or config.get("pretraining_tp", 1) != 1:
        raise ModelError("rankwise converts layer-wise rerankers without rope_scaling and pretraining_tp 1")
    first, last = config["start_layer"], config["num_hidden_layers"]
    if not first <= cutoff_layer <= last:
        raise ModelError(f"cutoff layer {cutoff_layer}: this reranker scores with layers {first} to {last}")
    kept = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
            "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta", "attention_bias",
            "bos_token_id", "eos_token_id")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": cutoff_layer,
            "tie_word_embeddings": False, **{k: config[k] for k in kept if k in config}}


def _convert(folder: Path, target: Path, cutoff_layer: int, token: str) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    config = json.loads((folder / "config.json").read_text())
    llama = llama_config(config, cutoff_layer)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no .safetensors weights to convert")
    logger.warning("converting %s to a Llama directory scoring with layer %d, once: %s", folder, cutoff_layer,
                   target)
    residual = config["scale_depth"] / math.sqrt(config["num_hidden_layers"])
    head = f"lm_head.{cutoff_layer - config['start_layer']}.linear_head.weight"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for pattern in _TOKENIZER_FILES:
            for file in folder.glob(pattern):
                shutil.copy(file, tmp / file.name)
        (tmp / "config.json").write_text(json.dumps(llama, indent=2) + "\n")
        token_id = AutoTokenizer.from_pretrained(tmp)(token, add_special_tokens=False)["input_ids"][0]
        weights, score_head = {}, None
        for file in files:
            with safe_open(str(file), framework="pt") as fh:
                for name in fh.keys():
                    if name == head:
                        score_head = fh.get_tensor(name).float()
                    elif _kept(name, cutoff_layer):
                        weights[name] = _folded(name, fh.get_tensor(name).float(), config["scale_emb"], residual)
        if score_head is None:
            raise ModelError(f"{folder}: no score head {head} in its weights")
        lm_head = torch.zeros((config["vocab_size"], config["hidden_size"]), dtype=torch.float32)
        lm_head[token_id] = score_head[0]
        weights["lm_head.weight"] = lm_head
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "rankwise-source.json").write_text(json.dumps(
            {"converted_from": str(folder), "cutoff_layer": cutoff_layer, "score_token": token,
             "score_token_id": token_id}, indent=2) + "\n")
        _publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kept(name: str, cutoff_layer: int) -> bool:
    """The embeddings, the final norm and the first ``cutoff_layer`` decoder layers."""
    if name in ("model.embed_tokens.weight", "model.norm.weight"):
        return True
    parts = name.split(".")
    return name.startswith("model.layers.") and int(parts[2]) < cutoff_layer


def _folded(name: str, tensor, scale_emb: float, residual: float):
    """A weight with MiniCPM's scaling folded in (embeddings, and the two projections back into the residual)."""
    if name == "model.embed_tokens.weight":
        return tensor * scale_emb
    if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
        return tensor * residual
    return tensor
