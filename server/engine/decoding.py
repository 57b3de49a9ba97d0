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

import numpy as np

from prompt_words import is_word_char, is_word_part
from server.engine import numeric
from server.engine.numeric import NEG_INF, log_softmax, logsumexp, softmax
from server.engine.runner import Array, Context, Runner
from server.engine.types import Budget
from server.engine.vocab import Vocabulary
from server.engine.words import per_word


@dataclass
class Word:
    """A completion of the typed word: its bytes from the tail's start and its tokens."""

    data: bytes
    tokens: list[int]
    logprob: float  # log P(tokens)
    total: float  # log P(tokens) + log P(a new word or the end follows)
    score: float  # ``total`` per word (the word may be "sci-fi")
    next_logprobs: Array  # the distribution after the word, to branch phrases from


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
    banned: Array,
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
    logprobs = context.logprobs[None]
    rows = None
    finished: dict[bytes, Word] = {}
    totals: list[float] = []  # log P(word and its end) of finished words, for stopping
    piece_bias = _bias(~vocab.word_piece_mask | banned)
    end_bias = _bias(~vocab.boundary_mask)
    steps = 0
    while True:
        candidates: list[tuple[float, int, int]] = []
        covered = [index for index, beam in enumerate(beams) if len(beam.data) >= len(tail)]
        if covered:
            rows_covered = logprobs[covered]
            endings = logsumexp(rows_covered + end_bias).tolist()
            best_values, best_ids = numeric.top_k(rows_covered + piece_bias, width)
            top_values, top_ids = best_values.tolist(), best_ids.tolist()
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
        runner.select(rows, np.array([parent for _, parent, _ in chosen]))
        logprobs = log_softmax(runner.step(rows, np.array([token for _, _, token in chosen])))
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


def _bias(excluded: Array) -> Array:
    """0 where a token may be chosen, -inf where ``excluded`` (a boolean mask) says not."""
    return np.where(excluded, np.float32(NEG_INF), np.float32(0.0))


@dataclass
class Row:
    """One decoding row: the tokens it must start with, then what the policy chose."""

    forced: deque[int]
    next_allowed: Array | None = None  # what the first chosen (not forced) token may be
    group: int = 0  # rows from the same finished word share a group (its rank)
    tokens: list[int] = field(default_factory=list)
    new_tokens: int = 0  # tokens the policy chose (not forced)
    data: bytes = b""
    logprob: float = 0.0
    done: bool = False
    ended: bool = False  # stopped by its end rule (or EOS), not by a limit
    end: int | None = None  # where the result ends in the generated text, when ``ended``


Policy = Callable[[Array, list[Row], list[Array | None]], list[int]]


def greedy_policy(banned: Array) -> Policy:
    """The most likely allowed token per row."""
    bias = _bias(banned)

    def choose(logprobs: Array, rows: list[Row], allowed: list[Array | None]) -> list[int]:
        best = (logprobs + bias).argmax(axis=-1).tolist()
        for index, ids in enumerate(allowed):
            if ids is not None:
                best[index] = int(ids[logprobs[index, ids].argmax()])
        return best

    return choose


def sampling_policy(
    vocab: Vocabulary,
    banned: Array,
    context: Sequence[int],
    *,
    temperature: float,
    top_k: int,
    repetition_penalty: float,
    generator: np.random.Generator,
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
    bias = _bias(banned)
    penalised = vocab.content_mask
    seen_in_context = np.zeros(vocab.size, dtype=bool)
    seen_in_context[np.array(list(context), dtype=np.int64)] = True
    seen: dict[int, Array] = {}

    def choose(logprobs: Array, rows: list[Row], allowed: list[Array | None]) -> list[int]:
        masks = [seen.setdefault(id(row), seen_in_context.copy()) for row in rows]
        repeat = np.stack(masks) & penalised
        scores = np.where(repeat, logprobs * np.float32(repetition_penalty), logprobs)
        young = np.array([row.new_tokens < min_new_tokens for row in rows])
        scores[young, vocab.eos_id] -= early_end_penalty
        scores = scores / np.float32(temperature) + bias
        for index, ids in enumerate(allowed):
            if ids is not None:
                restricted = np.full_like(scores[index], NEG_INF)
                restricted[ids] = scores[index, ids]
                scores[index] = restricted
        stuck = np.isinf(scores).all(axis=-1)
        scores[stuck, vocab.eos_id] = 0.0  # nothing allowed: the row ends (decode_rows drops it)
        values, indices = numeric.top_k(scores, top_k)
        # One draw per row by inverse CDF, all rows at once.
        cumulative = np.cumsum(softmax(values.astype(np.float64)), axis=-1)
        draws = generator.random((len(rows), 1))
        picks = np.minimum((cumulative < draws).sum(axis=-1), values.shape[-1] - 1)
        tokens = indices[np.arange(len(rows)), picks].tolist()
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
    banned: Array,
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
    runner.select(batch, np.zeros(len(rows), dtype=np.int64))
    active = list(rows)
    logprobs = np.broadcast_to(context.logprobs, (len(rows), context.logprobs.shape[-1]))
    tail_chars = len(tail.decode("utf-8"))
    while True:
        allowed: list[Array | None] = []
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
            if ids is not None and ids.size == 0:
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
            runner.select(batch, np.array(keep))
        step_tokens = np.array([active[index].tokens[-1] for index in keep])
        active = [active[index] for index in keep]
        logprobs = log_softmax(runner.step(batch, step_tokens))
    return rows


def _generated(data: bytes, tail_chars: int) -> str:
    """The text a row produced after the tail (an unfinished character at the end is left out)."""
    return data.decode("utf-8", errors="ignore")[tail_chars:]
