"""Randomly initialised tiny models built from configs at test time: a T5 with a Unigram (sentencepiece
style) tokenizer trained on a few sentences, and Qwen2 / Qwen3 / Gemma2 / Mistral causal LMs that use the Qwen
tokenizer shipped inside the installed qwen2.5-0.5b GGUF file. No model files, no hub."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

T5_SPECIAL = ["<pad>", "</s>", "<unk>"]
SENTENCES = [
    "Query: how do plants make food Document: Plants make food from light Relevant: true",
    "Query: what is bitcoin mining Document: sourdough bread rises because of yeast Relevant: false",
    "Query: capital of France Document0: Paris is the capital Document1: yeast Relevant: true false",
    "Given a query which of the following passages is the most relevant one to the query?",
    "Passage A: Passage B: Passage C: Passage D: Output only the passage label of the most relevant passage:",
    "Please write a question based on this passage.",
]


def tiny_t5_tokenizer() -> PreTrainedTokenizerFast:
    """A Unigram (sentencepiece) tokenizer with T5's conventions: "▁word" pieces, single characters as a
    fallback, </s> appended, <pad> = id 0, </s> = 1, <unk> = 2."""
    words = sorted({w for s in SENTENCES for w in s.replace(":", " ").replace("?", " ").split()})
    chars = sorted({c for s in SENTENCES for c in s if c != " "} | set("0123456789"))
    vocab = [(t, 0.0) for t in T5_SPECIAL] + [("▁" + w, -1.0) for w in words] + [("▁", -3.0)] \
        + [(c, -5.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(vocab_size: int, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0,
                      eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(config).eval()


def tiny_t5_backend(name: str = "tiny-random-t5", **options):
    from rankwise.llm.engines.seq2seq import Seq2SeqBackend

    tok = tiny_t5_tokenizer()
    options.setdefault("dtype", "float32")
    return Seq2SeqBackend(name, name=name, torch_model=tiny_t5(len(tok)), tokenizer=tok, device="cpu", **options)


def save_tiny_t5(path) -> None:
    """Write the tiny T5 and its tokenizer as a transformers directory at ``path``."""
    tok = tiny_t5_tokenizer()
    tiny_t5(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)


_SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 4096, "tie_word_embeddings": False}


def tiny_causal(arch: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A tiny randomly initialised 'qwen2', 'qwen3', 'gemma2' or 'mistral' causal LM."""
    torch.manual_seed(seed)
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab_size, **_SMALL)).eval()
    if arch == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab_size, head_dim=8, **_SMALL)).eval()
    if arch == "gemma2":
        return Gemma2ForCausalLM(Gemma2Config(vocab_size=vocab_size, head_dim=8, sliding_window=64,
                                              **_SMALL)).eval()
    if arch == "mistral":
        return MistralForCausalLM(MistralConfig(vocab_size=vocab_size, sliding_window=None, **_SMALL)).eval()
    raise ValueError(arch)


def qwen_tokenizer():
    """The Qwen2.5 tokenizer inside the installed qwen2.5-0.5b GGUF (None if it is not installed)."""
    from transformers import AutoTokenizer

    from rankwise.errors import ModelError
    from rankwise.llm.models import resolve_model

    try:
        gguf = resolve_model("qwen2.5-0.5b").gguf_file
    except ModelError:
        return None
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
