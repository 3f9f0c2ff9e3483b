"""The greedy probe: training prompts answered greedily once training ends.

Sampled answers can vary while the greedy one, the answer a generating method reranks with, is the same for
every prompt (a GRPO run whose sampled answers still varied gave one fixed list for 171 of 172 DL19 groups;
a groupwise SFT stage wrote all-zero scores for every group). The per-step checks cannot see that; this
probe can, in a minute, before an evaluation of an hour.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from rankwise.train.grpo_targets import Target

logger = logging.getLogger(__name__)

GREEDY_PROBE = 16
"""Training prompts in a probe, spread over the training rows."""

GREEDY_WARN_SHARE = 0.75
"""A warning when one answer covers this share of the probe: the passages shown differ, so a reranker that
reads them cannot answer them alike."""


@dataclass(frozen=True)
class ProbePrompt:
    """One training prompt as token ids, the answer prefix the method puts back before parsing, and how many
    passages it shows."""

    input_ids: Sequence[int]
    answer_prefix: str
    passages: int


def spread(items: Sequence, probe: int = GREEDY_PROBE) -> list:
    """Up to ``probe`` items spread evenly over ``items``."""
    step = max(1, len(items) // probe)
    return list(items[::step])[:probe]


def greedy_answers(model, tokenizer, prompts: Sequence[ProbePrompt], target: Target, max_new_tokens: int) -> dict:
    """Distinct greedy answers over ``prompts`` (read by ``target``, the method's parser) and the share of the
    most common one; logs a warning when one answer covers GREEDY_WARN_SHARE of them."""
    import torch

    keys = []
    for p in prompts:
        ids = torch.tensor([list(p.input_ids)], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        keys.append(target.read(p.answer_prefix + text, p.passages).key)
    top = Counter(keys).most_common(1)[0] if keys else ("", 0)
    found = {"prompts": len(keys), "distinct": len(set(keys)), "most_common": top[0],
             "most_common_share": top[1] / len(keys) if keys else None}
    if len(keys) >= 4 and top[1] / len(keys) >= GREEDY_WARN_SHARE:
        logger.warning("greedy answers collapsed: %d of %d probe prompts get %r", top[1], len(keys), top[0])
    return found
