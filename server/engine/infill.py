"""Filling a gap in a prompt with a causal LM: ``<mask>`` when the model cannot read both sides.

``infill_with_causal_lm`` proposes 1-3 word candidates by sampling the causal LM after the
left context and ranks them by the causal LM's probability of the whole text, so the right
context counts too. It takes plain (model, tokenizer) objects and returns (text, score)
pairs, best first; scores are log-probabilities (higher is better). The study's masked LM
fills masks itself (``server.engine.study.mlm_infill``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from server.engine.requests import check_stop

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_CANDIDATE_END = re.compile(r"[,.;:!?()\[\]{}|\n]")
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}")
_NO_SPACE_AFTER = frozenset("([{")


def _compose(left: str, middle: str, right: str) -> str:
    """left + middle + right with one space between words and none before punctuation."""
    text = left.rstrip()
    for part in (middle.strip(), right.strip()):
        if not part:
            continue
        if text and text[-1] not in _NO_SPACE_AFTER and part[0] not in _NO_SPACE_BEFORE:
            text += " "
        text += part
    return text


@torch.no_grad()
def _text_logprobs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> list[float]:
    """log P(text) under a causal LM, each text read after the end-of-text token."""
    eos = tokenizer.eos_token_id
    rows = [[eos, *tokenizer(text, add_special_tokens=False)["input_ids"]] for text in texts]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), eos, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
    return (token_logprobs * attention[:, 1:]).sum(dim=1).tolist()


@torch.no_grad()
def infill_with_causal_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    left: str,
    right: str,
    k: int = 5,
    *,
    samples: int = 12,
    max_words: int = 3,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> list[tuple[str, float]]:
    """Up to ``k`` gap fillers of 1-``max_words`` words, best first, for a causal LM.

    Candidates are the first 1..max_words words of the greedy continuation of ``left`` and
    of ``samples`` top-k samples (seeded), cut at punctuation. Each is scored by
    log P(left + candidate + right) - log P(left): the right context decides as much as the
    left, which is what a gap needs and plain continuation lacks.
    """
    if k < 1:
        return []
    eos = tokenizer.eos_token_id
    prefix = [eos, *tokenizer(left.rstrip(), add_special_tokens=False)["input_ids"]]
    input_ids = torch.tensor([prefix])
    common = {
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": 4 * max_words,
        "pad_token_id": eos,
        "eos_token_id": eos,
    }
    check_stop(stop)
    greedy = model.generate(input_ids, do_sample=False, **common)
    check_stop(stop)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sampled = model.generate(
            input_ids,
            do_sample=True,
            top_k=40,
            temperature=1.0,
            num_return_sequences=samples,
            **common,
        )
    check_stop(stop)
    continuations = tokenizer.batch_decode(
        [*greedy[:, len(prefix) :], *sampled[:, len(prefix) :]], skip_special_tokens=True
    )
    candidates: list[str] = []
    for continuation in continuations:
        words = _CANDIDATE_END.split(continuation, maxsplit=1)[0].split()
        for count in range(1, min(max_words, len(words)) + 1):
            candidate = " ".join(words[:count])
            if candidate not in candidates:
                candidates.append(candidate)
    if not candidates:
        return []
    texts = [left.rstrip(), *(_compose(left, candidate, right) for candidate in candidates)]
    scores = _text_logprobs(model, tokenizer, texts)
    ranked = sorted(
        zip(candidates, (score - scores[0] for score in scores[1:]), strict=True),
        key=lambda item: -item[1],
    )
    return ranked[:k]
