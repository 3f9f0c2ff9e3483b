"""The baseline rankwise must beat: a plain transformers yes/no loop, as a careful user would write it.

The dtype that is fast on this CPU, batches of 16 sorted by length (left padding), only the last
position through the LM head, head and log-softmax in fp32. No prefix reuse, no cache.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class PlainYesNoLoop:
    def __init__(self, model_dir: str, dtype: torch.dtype, batch_size: int = 16):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        self.head = self.model.get_output_embeddings().weight.float()
        self.batch_size = batch_size
        self.yes = sorted({self.tok(v, add_special_tokens=False)["input_ids"][0] for v in ("Yes", "yes", " Yes")})
        self.no = sorted({self.tok(v, add_special_tokens=False)["input_ids"][0] for v in ("No", "no", " No")})
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.tokens = 0

    @torch.inference_mode()
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """P(yes) over {yes, no} for each rendered prompt."""
        ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        self.tokens += sum(len(x) for x in ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros(len(ids))
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(batch):
                input_ids[row, width - len(ids[i]):] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]):] = 1
            hidden = self.model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, -1]
            # the LM head in fp32 too: bf16 logits would round yes/no scores into ties
            logits = hidden.float() @ self.head.T
            lp = torch.log_softmax(logits, dim=-1)
            yes, no = torch.logsumexp(lp[:, self.yes], -1), torch.logsumexp(lp[:, self.no], -1)
            out[batch] = torch.sigmoid(yes - no).numpy()
        return out
