"""Perplexity per token and per whitespace word.

Word perplexity, exp(total NLL / words), compares models whose tokenizers differ: the total
NLL of a prompt is the same quantity for every model, only the divisor changes. A prompt
longer than the scoring window is cut, and then only the words of the text actually scored
are counted: the divisor must describe the same text as the NLL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from prompt_words import whitespace_words


@torch.inference_mode()
def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    batch_size: int = 32,
    max_tokens: int = 256,
) -> dict[str, float]:
    """Each prompt is scored as EOS + prompt + EOS: predicting the end counts too.

    A prompt of more than ``max_tokens - 2`` tokens is scored as EOS + its first
    ``max_tokens - 1`` tokens, with no final EOS (it does not end there), and only the words
    of that prefix are counted.
    """
    eos = tokenizer.eos_token_id
    total_nll = 0.0
    total_tokens = 0
    total_words = 0
    model.eval()
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        rows: list[list[int]] = []
        for ids, scored_text, whole in _scored_prefixes(tokenizer, batch, max_tokens):
            rows.append([eos, *ids, eos] if whole else [eos, *ids])
            total_words += len(whitespace_words(scored_text))
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
    if total_tokens == 0:
        raise ValueError("no prompts to evaluate")
    return {
        "token_perplexity": math.exp(total_nll / total_tokens),
        "word_perplexity": math.exp(total_nll / max(1, total_words)),
        "prompts": float(len(prompts)),
        "tokens": float(total_tokens),
        "words": float(total_words),
    }


def _scored_prefixes(
    tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], max_tokens: int
) -> list[tuple[list[int], str, bool]]:
    """(token ids to score, the text they cover, whether that is the whole prompt) each.

    A prompt that fits (``max_tokens - 2`` tokens, room for both EOS) is kept whole; a longer
    one keeps ``max_tokens - 1`` tokens and the text up to the end of the last one.
    """
    if max_tokens < 3:
        raise ValueError(f"max_tokens must leave room for a token and two EOS, not {max_tokens}")
    encoded = tokenizer(list(prompts), add_special_tokens=False, return_offsets_mapping=True)
    prefixes = []
    for prompt, ids, offsets in zip(
        prompts, encoded["input_ids"], encoded["offset_mapping"], strict=True
    ):
        if len(ids) <= max_tokens - 2:
            prefixes.append((ids, prompt, True))
        else:
            kept = max_tokens - 1
            prefixes.append((ids[:kept], prompt[: offsets[kept - 1][1]], False))
    return prefixes
