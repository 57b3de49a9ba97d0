"""Expansions: seeded top-k sampling of whole prompts, cleaned and resampled when filters bite."""

from __future__ import annotations

from collections import deque

import numpy as np

from server.engine import decoding
from server.engine.decoding import Row, Word
from server.engine.filters import TermFilter, clean_expansion, dedupe_key
from server.engine.healing import Request
from server.engine.runner import Runner
from server.engine.text import end_of_line, starts_fresh, whole_phrases
from server.engine.types import Budget, EngineSettings
from server.engine.vocab import Vocabulary
from server.engine.words import per_word

TOP_K = 40
EXPANSION_MIN_TOKENS = 16  # an expansion is a detailed prompt, not one more word
REPETITION_PENALTY = 1.2


def sample_expansions(
    runner: Runner,
    vocab: Vocabulary,
    request: Request,
    words: list[Word],
    n: int,
    budget: Budget,
    settings: EngineSettings,
    banned: np.ndarray,
    terms: TermFilter,
) -> list[tuple[str, float]]:
    """Up to n cleaned continuations with scores, best first; resampled when filters bite.

    In a word, every expansion starts by finishing it as the likeliest word does, then
    a new word: sampling the rest of a typed word yields misspellings ("hilling").
    """
    generator = np.random.default_rng(settings.seed)
    forced: list[int] = []
    after_word: np.ndarray | None = None
    if request.where.in_word and words:
        forced = words[0].tokens
        starts_word = vocab.boundary_mask & ~banned
        starts_word[vocab.eos_id] = False
        after_word = np.flatnonzero(starts_word)
    found: dict[str, tuple[str, float]] = {}
    for _ in range(3):
        want = n - len(found)
        rows = [
            Row(forced=deque(forced), next_allowed=after_word)
            for _ in range(want + max(1, want // 2))
        ]
        policy = decoding.sampling_policy(
            vocab,
            banned,
            list(request.context.ids),
            temperature=settings.temperature,
            top_k=TOP_K,
            repetition_penalty=REPETITION_PENALTY,
            generator=generator,
            min_new_tokens=min(EXPANSION_MIN_TOKENS, settings.max_expansion_tokens // 2),
        )
        decoding.decode_rows(
            runner,
            vocab,
            request.context,
            rows,
            request.tail_bytes,
            policy=policy,
            end_rule=end_of_line,
            max_new_tokens=settings.max_expansion_tokens,
            banned=banned,
            budget=budget,
        )
        for row in rows:
            written = request.written(row)
            if written is None:
                continue
            generated, ended = written
            if not ended:  # cut short: keep whole phrases only
                generated = whole_phrases(generated)
            if starts_fresh(request.before):
                generated = generated.lstrip()
            continuation = clean_expansion(request.before, generated, request.where.brackets, terms)
            if continuation is None:
                continue
            score = per_word(row.logprob, request.partial + generated)
            key = dedupe_key(continuation)
            if key not in found or found[key][1] < score:
                found[key] = (continuation, score)
        if sum(detailed(text) for text, _ in found.values()) >= n or not budget.left():
            break
    # A model sure it is done after one phrase ("a castle on a hill, by craig mullins")
    # has written a continuation, not a detailed prompt: such come last, resampled first.
    ranked = sorted(found.values(), key=lambda item: (detailed(item[0]), item[1]), reverse=True)
    return ranked[:n]


def detailed(continuation: str) -> bool:
    """Whether an expansion adds at least two phrases (or a dozen words without commas)."""
    return continuation.count(",") >= 2 or len(continuation.split()) >= 12
