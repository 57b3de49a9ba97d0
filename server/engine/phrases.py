"""Next phrases: greedy rows that differ in their first free token, remembered as typed.

In a word, rows start with one of the best finished words and then a token that starts the
next word; otherwise with the likeliest tokens agreeing with the typed tail. Each row is
decoded greedily to the end of its phrase, and the decoded rows are kept by the tokens they
start from, so each keystroke in a word only pays for the word.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from prompt_words import is_word_part
from server.engine import decoding
from server.engine.decoding import Row, Word
from server.engine.filters import TermFilter, has_content, known_phrases, loop_start, repeats_known
from server.engine.healing import Request
from server.engine.numeric import NEG_INF, top_k
from server.engine.runner import Runner
from server.engine.syntax import cut_unbalanced, phrase_end
from server.engine.text import (
    drop_trailing_function_words,
    drop_unfinished_word,
    starts_fresh,
)
from server.engine.types import Budget, Suggestion
from server.engine.vocab import Vocabulary
from server.engine.words import per_word

WORD_BRANCHES = 2  # best words whose continuations are explored as phrases
PHRASE_PLAUSIBILITY = 5.0  # phrases this many nats per word less likely than the best: dropped
PHRASE_CACHE_SIZE = 512


@dataclass(frozen=True)
class _Decoded:
    """A greedy phrase row as decoded, to reuse for the same starting tokens."""

    tokens: tuple[int, ...]
    data: bytes
    logprob: float
    ended: bool
    eos: bool  # ended by the end-of-prompt token


class PhraseDecoder:
    """Starts phrase rows and decodes them greedily, remembering what it decoded."""

    def __init__(self, runner: Runner, vocab: Vocabulary) -> None:
        self._runner = runner
        self._vocab = vocab
        self._cache: OrderedDict[tuple[object, ...], _Decoded] = OrderedDict()

    def forget(self) -> None:
        """Drop remembered phrases (decoded under settings that changed)."""
        self._cache.clear()

    def rows(
        self, request: Request, words: list[Word], count: int, banned: np.ndarray
    ) -> list[Row]:
        """Rows that differ in their first free token, so the phrases offered differ.

        In a word, rows start with one of the best finished words and then a token that
        starts the next word; otherwise with the likeliest tokens agreeing with the tail.
        """
        starts: list[tuple[np.ndarray, float, list[int]]]  # (scores, prior, forced tokens)
        if request.where.in_word:
            # Ending the prompt right after the word is a fine branch: the ghost is the word.
            starts_word = self._vocab.boundary_mask & ~banned
            starts = [
                (
                    np.where(starts_word, word.next_logprobs, np.float32(NEG_INF)),
                    word.logprob,
                    word.tokens,
                )
                for word in words[:WORD_BRANCHES]
            ]
        else:
            never = banned.copy()
            never[self._vocab.eos_id] = True  # a phrase that ends before it starts is none
            tail = request.tail_bytes
            if tail:
                never = np.ones_like(never)
                never[self._vocab.allowed(self._vocab.consistent(tail), tail, banned)] = False
            starts = [(np.where(never, np.float32(NEG_INF), request.context.logprobs), 0.0, [])]
        branches: list[tuple[float, int, list[int]]] = []
        for group, (scores, prior, forced) in enumerate(starts):
            values, tokens = top_k(scores, count)
            for value, token in zip(values.tolist(), tokens.tolist(), strict=True):
                if value > NEG_INF:
                    branches.append((prior + value, group, [*forced, token]))
        branches.sort(key=lambda branch: branch[0], reverse=True)
        return [Row(forced=deque(tokens), group=group) for _, group, tokens in branches[:count]]

    def decode(
        self,
        request: Request,
        rows: list[Row],
        max_tokens: int,
        budget: Budget,
        banned: np.ndarray,
    ) -> list[Row]:
        """Greedy continuations of the rows, remembered by the tokens they start from.

        Greedy decoding from the same tokens always gives the same phrase, and while the user
        types a word its likeliest completion, hence the rows, rarely change ("portra",
        "portrai" -> " portrait" ","), so each keystroke in a word only pays for the word.
        """
        brackets, in_word = request.where.brackets, request.where.in_word

        def end_rule(generated: str) -> int | None:
            return phrase_end(generated, brackets, in_word)

        # In a word the rows' forced tokens cover the typed tail; otherwise it constrains them.
        common = (request.context.ids, max_tokens, brackets, in_word)
        common += (b"" if in_word else request.tail_bytes,)
        tail_chars = len(request.tail)
        todo: list[tuple[tuple[object, ...], Row]] = []
        for row in rows:
            key = (*common, tuple(row.forced))
            known = self._cache.get(key)
            if known is None:
                todo.append((key, row))
                continue
            self._cache.move_to_end(key)
            row.forced.clear()
            row.tokens, row.data, row.logprob = list(known.tokens), known.data, known.logprob
            row.done = True
            generated = row.data.decode("utf-8", errors="ignore")[tail_chars:]
            row.end = len(generated) if known.eos else end_rule(generated)
            row.ended = known.ended and row.end is not None
        decoding.decode_rows(
            self._runner,
            self._vocab,
            request.context,
            [row for _, row in todo],
            request.tail_bytes,
            policy=decoding.greedy_policy(banned),
            end_rule=end_rule,
            max_new_tokens=max_tokens,
            banned=banned,
            budget=budget,
        )
        for key, row in todo:
            if row.ended or row.new_tokens >= max_tokens:  # not cut short by the time budget
                eos = bool(row.tokens) and row.tokens[-1] == self._vocab.eos_id
                self._cache[key] = _Decoded(
                    tuple(row.tokens), row.data, row.logprob, row.ended, eos
                )
        while len(self._cache) > PHRASE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return rows


def phrase_suggestions(
    request: Request, rows: list[Row], menu: bool, terms: TermFilter
) -> list[Suggestion]:
    """Turn decoded rows into suggestions, dropping any that fail a quality filter.

    Menu items replace the typed part of the word (so a client's filtering on it works)
    and come best first; ghost text inserts at the cursor and comes in the order of the
    word it finishes, then best first.
    """
    where = request.where
    known = known_phrases(request.segment, where.cursor - where.segment_start)
    phrase_start = max(request.before.rfind(separator) + 1 for separator in ",;|\n")
    current_phrase = request.before[phrase_start:]
    partial = request.partial
    found: list[tuple[int, Suggestion]] = []
    for row in rows:
        written = request.written(row)
        if written is None:
            continue
        generated, ended = written
        if not ended:
            generated = drop_unfinished_word(generated, partial)
        loop = loop_start(partial + generated)
        if loop is not None:
            generated = generated[: max(0, loop - len(partial))]
        generated = cut_unbalanced(generated, where.brackets).rstrip(" \t,;|")
        generated = drop_trailing_function_words(generated, partial)
        if starts_fresh(request.before):
            generated = generated.lstrip()
        if menu and where.in_word and is_word_part(generated):
            continue  # it just finishes the word: the word item says the same
        new_text = partial + generated
        if (
            not generated
            or not has_content(new_text)
            or terms.search(new_text, after=len(partial)) is not None
            or repeats_known(current_phrase + generated, known)
        ):
            continue
        score = per_word(row.logprob, request.partial + generated)
        if menu and where.in_word:
            suggestion = Suggestion("phrase", where.word_start, where.cursor, new_text, score)
        else:
            suggestion = Suggestion("phrase", where.cursor, where.cursor, generated, score)
        found.append((row.group if not menu else 0, suggestion))
    if found:
        best = max(suggestion.score for _, suggestion in found)
        found = [item for item in found if item[1].score >= best - PHRASE_PLAUSIBILITY]
    found.sort(key=lambda item: (item[0], -item[1].score))
    return [suggestion for _, suggestion in found]
