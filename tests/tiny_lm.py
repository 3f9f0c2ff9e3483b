"""A randomly initialised tiny causal LM with a tokenizer trained in the test: exercises every code path
of the transformers engine in seconds, with no model files."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]
TEXT = ("Judge whether the passage answers the query. Passage: Query: Does the passage answer the query? "
        "Answer 'Yes' or 'No'. Yes No yes no 0 1 2 3 user assistant system the capital of France is Paris "
        "plants make food from light bitcoin mining sourdough bread rises because of yeast").split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(TEXT)] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=SPECIAL[1:])
    fast.chat_template = CHATML
    return fast


def tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def save_tiny_model(path) -> None:
    """Write the tiny random model and its tokenizer as a transformers directory at ``path``."""
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)


def tiny_backend(**options):
    from rankwise.llm.engines.transformers import TransformersBackend

    tok = tiny_tokenizer()
    return TransformersBackend("tiny-random-llama", name="tiny-random-llama", torch_model=tiny_model(len(tok)),
                               tokenizer=tok, device="cpu", **options)


TOPICS = ["bread yeast rises", "plants light food", "bitcoin mining energy", "capital of france paris"]


def tiny_training_setup(root, monkeypatch) -> tuple:
    """A tiny random causal LM directory and a tiny BEIR folder (12 queries over 4 topics, one judged
    passage each, grades 1-2) under ``root``, with the cache there too: what the training tests train on."""
    import json
    from pathlib import Path

    root = Path(root)
    monkeypatch.setenv("RANKWISE_CACHE", str(root / "cache"))
    model = root / "tiny-lm"
    save_tiny_model(model)
    data = root / "beir"
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t, words in enumerate(TOPICS):
        corpus += [{"_id": f"t{t}d{i}", "title": "", "text": f"{words} passage {i}"} for i in range(6)]
        queries += [{"_id": f"t{t}q{q}", "text": f"{words} {q}"} for q in range(3)]
        qrels += [f"t{t}q{q}\tt{t}d{q}\t{1 + q % 2}" for q in range(3)]
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (data / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (data / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return model, data
