"""Filling ``<mask>`` and writing with the study's masked LM.

The study's inference was ``pipeline("fill-mask")`` on text such as "A portrait of <mask>".
``fill_mask`` does the same from the logits, but returns whole words: a byte-level BPE splits
rarer words into pieces, so a first piece that the model would continue is extended with its
continuation (up to ``max_pieces``). ``expand_with_masked_lm`` writes by filling a mask at the
end of the text, one token at a time. Both take plain (model, tokenizer) objects; scores are
log-probabilities (higher is better).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from server.engine.masks import MASK
from server.engine.requests import check_stop

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_WORDLIKE = re.compile(r"\w")


_PIECES: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, list[str]] = weakref.WeakKeyDictionary()


def _pieces(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every token id's text, decoded once per tokenizer.

    Decoding candidates one id at a time took most of a fill-mask's time (8k ids scanned when
    a typed prefix is rare).
    """
    pieces = _PIECES.get(tokenizer)
    if pieces is None:
        pieces = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
        _PIECES[tokenizer] = pieces
    return pieces


def _window(
    model: PreTrainedModel, ids: list[int], position: int, room: int = 0
) -> tuple[list[int], int]:
    """``ids`` cut around ``position`` to fit the model's positions, ``room`` tokens spare.

    The first and last ids (the tokenizer's <s> and </s>) are kept; the cut keeps the text
    nearest the mask, the left side first. A long prompt otherwise overflows the position
    embeddings (an index error deep inside the model).
    """
    # RoBERTa numbers positions from padding_idx + 1: two of them are never usable.
    size = model.config.max_position_embeddings - 2 - room
    if len(ids) <= size:
        return ids, position
    inner = size - 2
    start = min(max(1, position - inner * 3 // 4), len(ids) - 1 - inner)
    return [ids[0], *ids[start : start + inner], ids[-1]], position - start + 1


def _mask_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.mask_token is None or tokenizer.mask_token_id is None:
        raise ValueError("this tokenizer has no mask token: fill-mask needs a masked LM")
    return int(tokenizer.mask_token_id)


@torch.no_grad()
def fill_mask(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    k: int = 5,
    *,
    words_only: bool = True,
    candidates: int = 30,
    max_pieces: int = 3,
    prefix: str = "",
    nth: int = 0,
    stop: threading.Event | None = None,
) -> list[tuple[str, float]]:
    """Up to ``k`` fillers for the ``nth`` ``<mask>`` of ``text`` (from 0), best first, with log P.

    Text without ``<mask>`` has nothing to fill: the answer is empty. Other masks in the text
    stay masks (unknown words) for the model. With ``words_only``, fillers are words (they
    contain a letter or digit), never punctuation or special tokens. After a space the filler
    is a new word; right after other characters ("port<mask>") it continues what is there.
    A multi-piece word scores the sum of its pieces' log-probabilities. With ``prefix`` (the
    part of a word already typed, matched case-insensitively) only words that start with it
    are offered, and the whole vocabulary is searched for first pieces that agree with it.
    """
    mask_id = _mask_id(tokenizer)
    starts = [index for index in range(len(text)) if text.startswith(MASK, index)]
    if not 0 <= nth < len(starts) or k < 1:
        return []
    before = text[: starts[nth]]
    ids = list(tokenizer(text.replace(MASK, tokenizer.mask_token))["input_ids"])
    positions = [index for index, token in enumerate(ids) if token == mask_id]
    if nth >= len(positions):
        return []
    ids, position = _window(model, ids, positions[nth], room=max_pieces)
    logprobs = _logprobs_at(model, [ids], [position])[0]
    new_word = bool(before) and before[-1].isspace()
    special = set(tokenizer.all_special_ids)
    typed = prefix.casefold()
    scanned = logprobs.numel() if typed else 50 * candidates
    first: list[tuple[list[int], float]] = []
    pieces = _pieces(tokenizer)
    for token in torch.argsort(logprobs, descending=True)[:scanned].tolist():
        if token in special or token >= len(pieces):
            continue
        piece = pieces[token]
        if piece.startswith(" ") != new_word or not piece.strip():
            continue
        if words_only and not _WORDLIKE.search(piece):
            continue
        stem = piece.strip().casefold()
        if typed and not (stem.startswith(typed) or typed.startswith(stem)):
            continue
        first.append(([token], float(logprobs[token])))
        if len(first) == candidates:
            break
    check_stop(stop)
    words = _extend_pieces(model, tokenizer, ids, position, first, max_pieces, stop)
    best: dict[str, float] = {}
    for pieces, score in words:
        word = tokenizer.decode(pieces).strip()
        if not word or not word.casefold().startswith(typed):
            continue
        if score > best.get(word, -float("inf")):
            best[word] = score
    return sorted(best.items(), key=lambda item: -item[1])[:k]


def _extend_pieces(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    ids: list[int],
    position: int,
    words: list[tuple[list[int], float]],
    max_pieces: int,
    stop: threading.Event | None,
) -> list[tuple[list[int], float]]:
    """Grow each word while the model's best next token continues it (no leading space)."""
    mask_id = _mask_id(tokenizer)
    pieces = _pieces(tokenizer)
    special = set(tokenizer.all_special_ids)
    growing = list(range(len(words)))
    for _ in range(max_pieces - 1):
        if not growing:
            break
        rows = []
        for index in growing:
            pieces = words[index][0]
            rows.append([*ids[:position], *pieces, mask_id, *ids[position + 1 :]])
        positions = [position + len(words[index][0]) for index in growing]
        logprobs = _logprobs_at(model, rows, positions)
        check_stop(stop)
        still = []
        for row, index in enumerate(growing):
            token = int(logprobs[row].argmax())
            piece = pieces[token] if token < len(pieces) else ""
            if token in special or piece[:1].isspace() or not piece.isalnum():
                continue
            pieces, score = words[index]
            words[index] = ([*pieces, token], score + float(logprobs[row, token]))
            still.append(index)
        growing = still
    return words


def _logprobs_at(
    model: PreTrainedModel, rows: Sequence[Sequence[int]], positions: Sequence[int]
) -> torch.Tensor:
    """log-softmax of the model's logits at one position of each row (rows right-padded)."""
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    logits = model(input_ids=input_ids, attention_mask=attention).logits
    picked = logits[torch.arange(len(rows)), torch.tensor(positions)]
    return torch.log_softmax(picked.float(), dim=-1)


@torch.no_grad()
def expand_with_masked_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    max_tokens: int = 16,
    *,
    top_k: int = 20,
    temperature: float = 1.0,
    seed: int = 0,
    stop: threading.Event | None = None,
) -> str:
    """Continue ``text`` one token at a time by filling a mask at its end (the study's MLM).

    Three masks follow the text and the first is filled, so the model does not believe the
    prompt ends right there. This is how a masked LM can be made to write; it is slow and
    weak by design, a baseline beside the causal LMs.
    """
    mask_id = _mask_id(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    current = text.rstrip()
    for _ in range(max_tokens):
        check_stop(stop)
        ids = list(tokenizer(current + tokenizer.mask_token * 3)["input_ids"])
        if mask_id not in ids:
            break
        ids, position = _window(model, ids, ids.index(mask_id))
        logits = _logprobs_at(model, [ids], [position])[0]
        logits[special] = -float("inf")
        top = torch.topk(logits / temperature, min(top_k, logits.numel()))
        token = int(top.indices[torch.multinomial(top.values.softmax(-1), 1, generator=generator)])
        current += tokenizer.decode([token])
    return current
