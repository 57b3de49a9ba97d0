"""Decoding loops: word beam search, greedy phrases and sampled expansions, all batched.

Every loop starts from the runner's primed context and first honours the *tail*: the bytes
the user typed after the last safe token boundary (token healing). While a row has not yet
produced the whole tail, only tokens that agree with it are allowed, so no suggestion ever
contradicts what was typed. The stop flag is checked and the time budget enforced between
steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from prompt_words import is_word_char, is_word_part
from server.engine.runner import Context, Runner
from server.engine.types import Budget
from server.engine.vocab import Vocabulary
from server.engine.words import per_word

Tensor = torch.Tensor
NEG_INF = float("-inf")


@dataclass
class Word:
    """A completion of the typed word: its bytes from the tail's start and its tokens."""

    data: bytes
    tokens: list[int]
    logprob: float  # log P(tokens)
    total: float  # log P(tokens) + log P(a new word or the end follows)
    score: float  # ``total`` per word (the word may be "sci-fi")
    next_logprobs: Tensor  # the distribution after the word, to branch phrases from


def _valid_word(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and is_word_part(text) and is_word_char(text[-1])


@dataclass
class _Beam:
    tokens: list[int]
    data: bytes
    logprob: float
    extra: int  # tokens added after the typed tail was covered


def word_search(
    runner: Runner,
    vocab: Vocabulary,
    context: Context,
    tail: bytes,
    word_offset: int,
    *,
    width: int,
    extra_steps: int,
    banned: Tensor,
    budget: Budget,
) -> list[Word]:
    """Complete the typed word: a beam search constrained to ``tail``, ending at word ends.

    ``context`` is the primed context before the tail; ``tail[word_offset:]`` is the typed part
    of the word (before it: a leading space or punctuation that was backed off). A beam may
    end once it has produced the tail; its score counts the probability that a new word (or
    the end of the prompt) follows, so "portr" is not offered as a finished word. A beam grows
    at most ``extra_steps`` tokens past the tail, and the search stops once ``width`` words
    are found that no remaining beam can beat on total log-probability.
    """
    beams = [_Beam([], b"", 0.0, 0)]
    logprobs = context.logprobs.unsqueeze(0)
    rows = None
    finished: dict[bytes, Word] = {}
    totals: list[float] = []  # log P(word and its end) of finished words, for stopping
    piece_bias = torch.zeros(vocab.size).masked_fill_(~vocab.word_piece_mask | banned, NEG_INF)
    end_bias = torch.zeros(vocab.size).masked_fill_(~vocab.boundary_mask, NEG_INF)
    steps = 0
    while True:
        candidates: list[tuple[float, int, int]] = []
        covered = [index for index, beam in enumerate(beams) if len(beam.data) >= len(tail)]
        if covered:
            rows_covered = logprobs[torch.tensor(covered)]
            endings = torch.logsumexp(rows_covered + end_bias, dim=-1).tolist()
            top = torch.topk(rows_covered + piece_bias, min(width, vocab.size), dim=-1)
            top_values, top_ids = top.values.tolist(), top.indices.tolist()
            for position, index in enumerate(covered):
                beam = beams[index]
                word = beam.data[word_offset:]
                if _valid_word(word):
                    total = beam.logprob + endings[position]
                    score = per_word(total, word.decode("utf-8"))
                    totals.append(total)
                    if word not in finished or finished[word].score < score:
                        finished[word] = Word(
                            beam.data, beam.tokens, beam.logprob, total, score, logprobs[index]
                        )
                if beam.extra < extra_steps:
                    candidates.extend(
                        (beam.logprob + value, index, token)
                        for value, token in zip(
                            top_values[position], top_ids[position], strict=True
                        )
                        if value != NEG_INF
                    )
        for index, beam in enumerate(beams):
            if len(beam.data) >= len(tail):
                continue
            remaining = tail[len(beam.data) :]
            allowed = vocab.allowed(vocab.word_consistent(remaining), remaining, banned)
            candidates.extend(
                (beam.logprob + value, index, token)
                for value, token in zip(
                    logprobs[index, allowed].tolist(), allowed.tolist(), strict=True
                )
            )
        candidates.sort(reverse=True)
        chosen = candidates[:width]
        if len(totals) >= width:
            bar = sorted(totals, reverse=True)[width - 1]
            chosen = [candidate for candidate in chosen if candidate[0] > bar]
        if not chosen or steps >= len(tail) + extra_steps or not budget.left():
            break
        if rows is None:
            rows = runner.fork(context, 1, capacity=len(tail) + extra_steps + 1)
        runner.select(rows, torch.tensor([parent for _, parent, _ in chosen]))
        logits = runner.step(rows, torch.tensor([token for _, _, token in chosen]))
        logprobs = torch.log_softmax(logits, dim=-1)
        beams = [
            _Beam(
                [*beams[parent].tokens, token],
                beams[parent].data + _bytes(vocab, token),
                total,
                beams[parent].extra + 1 if len(beams[parent].data) >= len(tail) else 0,
            )
            for total, parent, token in chosen
        ]
        steps += 1
    return sorted(finished.values(), key=lambda word: word.score, reverse=True)


def _bytes(vocab: Vocabulary, token: int) -> bytes:
    return vocab.token_bytes[token] or b""


@dataclass
class Row:
    """One decoding row: the tokens it must start with, then what the policy chose."""

    forced: deque[int]
    next_allowed: Tensor | None = None  # what the first chosen (not forced) token may be
    group: int = 0  # rows from the same finished word share a group (its rank)
    tokens: list[int] = field(default_factory=list)
    new_tokens: int = 0  # tokens the policy chose (not forced)
    data: bytes = b""
    logprob: float = 0.0
    done: bool = False
    ended: bool = False  # stopped by its end rule (or EOS), not by a limit
    end: int | None = None  # where the result ends in the generated text, when ``ended``


Policy = Callable[[Tensor, list[Row], list[Tensor | None]], list[int]]


def greedy_policy(banned: Tensor) -> Policy:
    """The most likely allowed token per row."""
    bias = torch.zeros(banned.shape[0]).masked_fill_(banned, NEG_INF)

    def choose(logprobs: Tensor, rows: list[Row], allowed: list[Tensor | None]) -> list[int]:
        best = (logprobs + bias).argmax(dim=-1).tolist()
        for index, ids in enumerate(allowed):
            if ids is not None:
                best[index] = int(ids[logprobs[index, ids].argmax()])
        return best

    return choose


def sampling_policy(
    vocab: Vocabulary,
    banned: Tensor,
    context: Sequence[int],
    *,
    temperature: float,
    top_k: int,
    repetition_penalty: float,
    generator: torch.Generator,
    min_new_tokens: int = 0,
    early_end_penalty: float = 4.0,
) -> Policy:
    """Top-k sampling with temperature and a repetition penalty on words already used.

    The penalty scales the log-probability of content tokens seen in the context or the row
    (CTRL-style); separators are exempt, or prompts would lose their commas. Before
    ``min_new_tokens`` ending the prompt costs ``early_end_penalty`` nats: a model that only
    half wants to stop goes on, one that is sure it is done is not forced to ramble. All
    rows are sampled in one call, so the result depends only on the seed, not on timing.
    """
    bias = torch.zeros(vocab.size).masked_fill_(banned, NEG_INF)
    penalised = vocab.content_mask
    seen_in_context = torch.zeros(vocab.size, dtype=torch.bool)
    seen_in_context[torch.tensor(list(context), dtype=torch.long)] = True
    seen: dict[int, Tensor] = {}

    def choose(logprobs: Tensor, rows: list[Row], allowed: list[Tensor | None]) -> list[int]:
        masks = [seen.setdefault(id(row), seen_in_context.clone()) for row in rows]
        repeat = torch.stack(masks) & penalised
        scores = torch.where(repeat, logprobs * repetition_penalty, logprobs)
        young = torch.tensor([row.new_tokens < min_new_tokens for row in rows])
        scores[young, vocab.eos_id] -= early_end_penalty
        scores = scores / temperature + bias
        for index, ids in enumerate(allowed):
            if ids is not None:
                restricted = torch.full_like(scores[index], NEG_INF)
                restricted[ids] = scores[index, ids]
                scores[index] = restricted
        stuck = torch.isinf(scores).all(dim=-1)
        scores[stuck, vocab.eos_id] = 0.0  # nothing allowed: the row ends (decode_rows drops it)
        top = torch.topk(scores, min(top_k, vocab.size), dim=-1)
        picks = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)
        tokens = top.indices.gather(1, picks).squeeze(1).tolist()
        for mask, token in zip(masks, tokens, strict=True):
            mask[token] = True
        return tokens

    return choose


def decode_rows(
    runner: Runner,
    vocab: Vocabulary,
    context: Context,
    rows: list[Row],
    tail: bytes,
    *,
    policy: Policy,
    end_rule: Callable[[str], int | None],
    max_new_tokens: int,
    banned: Tensor,
    budget: Budget,
) -> list[Row]:
    """Decode all rows in one batch until each ends, runs out of tokens or time runs out.

    ``end_rule`` sees the text generated after the tail and returns where the result ends
    (or None to go on). Rows that finish leave the batch so they cost nothing more.
    """
    if not rows:
        return rows
    longest_forced = max(len(row.forced) for row in rows)
    batch = runner.fork(context, 1, capacity=longest_forced + max_new_tokens + 1)
    runner.select(batch, torch.zeros(len(rows), dtype=torch.long))
    active = list(rows)
    logprobs = context.logprobs.unsqueeze(0).expand(len(rows), -1)
    tail_chars = len(tail.decode("utf-8"))
    while True:
        allowed: list[Tensor | None] = []
        for row in active:
            remaining = tail[len(row.data) :]
            if row.forced:
                allowed.append(None)
            elif remaining:
                allowed.append(vocab.allowed(vocab.consistent(remaining), remaining, banned))
            else:
                allowed.append(row.next_allowed)
                row.next_allowed = None
        chosen = policy(logprobs, active, allowed)
        for index, row in enumerate(active):
            ids = allowed[index]
            if ids is not None and ids.numel() == 0:
                row.done = True  # nothing agrees with the typed text: drop this row
                continue
            if row.forced:
                token = row.forced.popleft()
            else:
                token = chosen[index]
                row.new_tokens += 1
            row.tokens.append(token)
            row.logprob += float(logprobs[index, token])
            if token == vocab.eos_id:
                row.done = row.ended = True
                row.end = len(_generated(row.data, tail_chars))
                continue
            row.data += _bytes(vocab, token)
            if len(row.data) >= len(tail) and not row.forced:
                end = end_rule(_generated(row.data, tail_chars))
                if end is not None:
                    row.done = row.ended = True
                    row.end = end
            if row.new_tokens >= max_new_tokens:
                row.done = True
        keep = [index for index, row in enumerate(active) if not row.done]
        if not keep or not budget.left():
            break
        if len(keep) < len(active):
            runner.select(batch, torch.tensor(keep))
        step_tokens = torch.tensor([active[index].tokens[-1] for index in keep])
        active = [active[index] for index in keep]
        logprobs = torch.log_softmax(runner.step(batch, step_tokens), dim=-1)
    return rows


def _generated(data: bytes, tail_chars: int) -> str:
    """The text a row produced after the tail (an unfinished character at the end is left out)."""
    return data.decode("utf-8", errors="ignore")[tail_chars:]
