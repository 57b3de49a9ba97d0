"""Perplexity per token and per whitespace word.

Word perplexity, exp(total NLL / words), compares models whose tokenizers differ: the total
NLL of a prompt is the same quantity for every model, only the divisor changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast


@torch.inference_mode()
def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    batch_size: int = 32,
    max_tokens: int = 256,
) -> dict[str, float]:
    """Each prompt is scored as EOS + prompt + EOS: predicting the end counts too."""
    eos = tokenizer.eos_token_id
    total_nll = 0.0
    total_tokens = 0
    total_words = 0
    model.eval()
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        encoded = tokenizer(list(batch), add_special_tokens=False)["input_ids"]
        rows = [[eos, *ids[: max_tokens - 2], eos] for ids in encoded]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), eos, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        targets = input_ids[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
        ).view(targets.shape)
        valid = mask[:, 1:].bool()
        total_nll += float(nll[valid].sum())
        total_tokens += int(valid.sum())
        total_words += sum(len(p.split()) for p in batch)
    if total_tokens == 0:
        raise ValueError("no prompts to evaluate")
    return {
        "token_perplexity": math.exp(total_nll / total_tokens),
        "word_perplexity": math.exp(total_nll / max(1, total_words)),
        "prompts": float(len(prompts)),
        "tokens": float(total_tokens),
        "words": float(total_words),
    }
