"""The query model: a word n-gram in backoff form (as an ARPA file or KenLM's trie holds one).

Tokens are whitespace-separated words exactly as typed: case and punctuation stay attached
("portrait," and "portrait" are different words). Measured on the first 100 KSR prompts this
beat splitting commas off as tokens of their own by 0.02-0.08 KSR: the attached comma lets
completions of a partial word offer "palette" and "palette," as separate candidates, and the
context is not spent on commas.

Word ids follow sorted string order, so "words starting with p" is a contiguous id range and
completions of a partial word are a contiguous slice of any context's successors. <s> and </s>
take the two ids after the vocabulary.

Each order n >= 2 is a ``Level``: contexts (the n - 1 words before), each with its successors
(sorted ids) and the full probability P(w | h) of each, and a backoff weight gamma(h):

    P(w | h) = prob(h w)                      when w is a successor of h,
               gamma(h) * P(w | h without its first word)   otherwise,

down to the unigram; a context that is not stored is skipped (gamma 1). Order-2 contexts are
word ids (dense arrays); an order-n context is keyed by its parent (its first n - 2 words, a
context of order n - 1) and its last word: parent index * width + word. Histories are padded
with <s>, so "<s> <s> a" is a context like any other.

The estimator (``counting``) stores interpolated Kneser-Ney (Chen & Goodman) in this form, so
the probabilities are exactly the interpolated ones; pruning then removes successors and
re-normalises gamma (Stolcke 1998). The tables may be arrays in memory, memory maps, files
read piece by piece, or 8-bit codes with their codebook (``storage``): all are indexed alike.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from prompt_words import whitespace_words

UNKNOWN = -1
CANDIDATES_PER_ORDER = 24
REMEMBERED_ROWS = 32  # distinct contexts per lookup still answered from the context cache
DEDUPLICATED_ROWS = 100_000  # larger batches (estimating, pruning) look every row up directly


class Table(Protocol):
    """A one-dimensional table: an ndarray, or a stored one read on demand (``storage``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray: ...


class SortedTable(Table, Protocol):
    def searchsorted(self, query: np.ndarray) -> np.ndarray: ...


class SortedWords(Sequence[str]):
    """The vocabulary in sorted order, kept as one UTF-8 buffer of lines and their offsets.

    As Python strings plus a dict, the 381k words of the shared corpus took the server 80 MB
    and a third of a second to load. UTF-8 bytes sort as their strings do, so finding a word
    or the words with a prefix is a binary search over the buffer (about 20 probes).
    """

    def __init__(self, lines: bytes) -> None:
        """``lines``: the words, sorted, joined by newlines (the ``vocab.txt`` format)."""
        self._data = lines
        if lines:
            breaks = np.flatnonzero(np.frombuffer(lines, dtype=np.uint8) == ord("\n"))
            self._starts = np.concatenate(([0], breaks + 1, [len(lines) + 1])).astype(np.int64)
        else:
            self._starts = np.zeros(1, dtype=np.int64)
        self._everything = range(len(self._starts) - 1)

    @classmethod
    def from_words(cls, words: Sequence[str]) -> SortedWords:
        return cls("\n".join(words).encode("utf-8"))

    @property
    def lines(self) -> bytes:
        return self._data

    def _bytes(self, index: int) -> bytes:
        return self._data[self._starts[index] : self._starts[index + 1] - 1]

    def __len__(self) -> int:
        return len(self._everything)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._bytes(index % len(self)).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        lines = self._data.split(b"\n") if self._data else []
        return (line.decode("utf-8") for line in lines)

    def index_of(self, word: str) -> int:
        """The word's id, or UNKNOWN."""
        key = word.encode("utf-8")
        index = bisect_left(self._everything, key, key=self._bytes)
        return index if index < len(self) and self._bytes(index) == key else UNKNOWN

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """[low, high): the ids of the words that start with ``prefix``."""
        key = prefix.encode("utf-8")
        low = bisect_left(self._everything, key, key=self._bytes)
        high = bisect_right(
            self._everything, key, lo=low, key=lambda index: self._bytes(index)[: len(key)]
        )
        return low, high


@dataclass(frozen=True)
class Level:
    """One order's contexts and successors (see the module docstring).

    Context ``i`` has the successors ``words[start[i]:start[i + 1]]`` (sorted ids) with their
    probabilities ``prob`` beside them, and the backoff weight ``backoff[i]``. ``keys`` is None
    at order 2 (context i is word i), else the sorted keys of the contexts.
    """

    keys: SortedTable | None
    start: Table  # one more than contexts
    backoff: Table
    words: Table
    prob: Table

    FIELDS = ("keys", "start", "backoff", "words", "prob")

    @property
    def contexts(self) -> int:
        return len(self.start) - 1


def lookup(keys: SortedTable, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of each query in a sorted key array; negative queries never match."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool), np.zeros(query.shape, dtype=np.int64)
    index = np.minimum(keys.searchsorted(query), len(keys) - 1)
    return (keys[index] == query) & (query >= 0), index


def find_in_segments(
    words: Table, start: np.ndarray, end: np.ndarray, query: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of each active query within its sorted segment ``words[start:end]``.

    Ranking asks about many words after one context (one searchsorted over one slice); other
    callers ask about a different context per word: a binary search run on all rows at once.
    """
    found = np.zeros(query.shape, dtype=bool)
    if len(words) == 0 or not active.any():
        return found, np.zeros(query.shape, dtype=np.int64)
    rows = np.flatnonzero(active)
    first, last = int(start[rows[0]]), int(end[rows[0]])
    if (start[rows] == first).all() and (end[rows] == last).all():
        index = np.zeros(query.shape, dtype=np.int64)
        index[rows] = first + np.searchsorted(words[first:last], query[rows])
    else:
        low, high = start[rows].astype(np.int64), end[rows].astype(np.int64)
        wanted = query[rows]
        while True:
            open_ = low < high
            if not open_.any():
                break
            middle = (low + high) // 2
            probe = np.zeros(len(rows), dtype=np.int64)
            probe[open_] = words[middle[open_]]
            below = open_ & (probe < wanted)
            low = np.where(below, middle + 1, low)
            high = np.where(open_ & ~below, middle, high)
        index = np.zeros(query.shape, dtype=np.int64)
        index[rows] = low
    inside = active & (index < end)
    index = np.where(inside, index, 0)
    hits = np.flatnonzero(inside)  # read only these: the others' index 0 is far away
    found[hits] = words[index[hits]] == query[hits]
    return found, index


@dataclass
class WordNgram:
    """Probabilities of the next word after up to ``order - 1`` words; see the module docstring.

    Histories are the ids before the predicted word, padded with <s>: ``history(words)``.
    """

    vocab: SortedWords
    unigram: Table  # P1 over ids, </s> included, <s> 0
    unknown_probability: float  # P1 of one unseen word
    levels: tuple[Level, ...]  # orders 2, 3, ...

    def __post_init__(self) -> None:
        self.bos = len(self.vocab)
        self.eos = self.bos + 1
        self.width = self.bos + 2
        self.order = 1 + len(self.levels)
        self._unigram_top = lru_cache(maxsize=8192)(self._unigram_top_uncached)
        # Typing through a word asks about the same contexts at every keystroke.
        self._one_context = lru_cache(maxsize=8192)(self._one_context_uncached)
        self._ranked = lru_cache(maxsize=1024)(self._ranked_uncached)

    def limited(self, order: int) -> WordNgram:
        """The same statistics seen up to ``order`` words (3 is the classic trigram)."""
        if not 2 <= order <= self.order:
            raise ValueError(f"order must be from 2 to {self.order}, got {order}")
        return replace(self, levels=self.levels[: order - 1])

    @property
    def size(self) -> dict[str, int]:
        """How many words, contexts and n-grams each order holds (for reports)."""
        sizes = {"words": len(self.vocab)}
        for order, level in enumerate(self.levels, start=2):
            sizes[f"{order}-grams"] = len(level.words)
        return sizes

    # ---------------------------------------------------------------- probabilities
    def id_of(self, token: str) -> int:
        return self.vocab.index_of(token)

    def history(self, words: Sequence[str]) -> list[int]:
        """The ``order - 1`` ids before the next word: the last words, after <s> padding."""
        width = max(1, self.order - 1)
        ids = [self.id_of(word) for word in words[-width:]]
        return [self.bos] * (width - len(ids)) + ids

    def _context(self, history: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
        """(found, index) of each row's last ``order - 1`` ids among the contexts of ``order``.

        Each distinct context is looked up once: a ranking asks about one context many times.
        """
        columns = history[:, -(order - 1) :]
        if len(columns) == 0 or len(columns) > DEDUPLICATED_ROWS:
            return self._contexts(columns, order)
        if (columns == columns[0]).all():
            found, index = self._one_context(tuple(columns[0].tolist()), order)
            return np.full(len(columns), found), np.full(len(columns), index)
        distinct, inverse = np.unique(columns, axis=0, return_inverse=True)
        if len(distinct) <= REMEMBERED_ROWS:  # the end-of-prompt scores of a ranking
            pairs = [self._one_context(tuple(ids), order) for ids in distinct.tolist()]
            found = np.array([hit for hit, _ in pairs], dtype=bool)
            index = np.array([at for _, at in pairs], dtype=np.int64)
        else:  # perplexity: many contexts, each asked once
            found, index = self._contexts(distinct, order)
        inverse = inverse.reshape(-1)
        return found[inverse], index[inverse]

    def _one_context_uncached(self, ids: tuple[int, ...], order: int) -> tuple[bool, int]:
        found, index = self._contexts(np.array([ids], dtype=np.int64), order)
        return bool(found[0]), int(index[0])

    def _contexts(self, columns: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
        """``_context`` for rows of exactly ``order - 1`` ids, without deduplication."""
        index = columns[:, 0].astype(np.int64)
        found = index >= 0
        for column, level in zip(range(1, order - 1), self.levels[1:], strict=False):
            word = columns[:, column]
            assert level.keys is not None
            found, index = lookup(
                level.keys, np.where(found & (word >= 0), index * self.width + word, -1)
            )
        return found, index

    def probability(self, history: np.ndarray, c: np.ndarray) -> np.ndarray:
        """P(c | history) for each row of ``history`` (at least one id, UNKNOWN allowed)."""
        history = np.asarray(history, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        if history.ndim != 2 or history.shape[1] < 1:
            raise ValueError("a history is at least one id (pad with <s>)")
        known_c = c >= 0
        p = np.where(known_c, self.unigram[np.maximum(c, 0)], self.unknown_probability)
        for order, level in enumerate(self.levels, start=2):
            if history.shape[1] < order - 1:
                break
            found, at = self._context(history, order)
            if not found.any():
                continue  # a shorter context may still be stored at the next order
            # The tables are read (maybe from disk) at the found contexts only.
            known = at[found]
            start = np.zeros(len(c), dtype=np.int64)
            end = np.zeros(len(c), dtype=np.int64)
            start[found] = level.start[known]
            end[found] = level.start[known + 1]
            hit, at_word = find_in_segments(level.words, start, end, c, found & known_c)
            backoff = np.ones(len(c))
            backoff[found] = level.backoff[known]
            p = backoff * p
            p[hit] = level.prob[at_word[hit]]
        return p

    def perplexity(self, prompts: Sequence[str]) -> dict[str, float]:
        """Perplexity per token (</s> included) and per whitespace word, plus the OOV rate."""
        width = max(1, self.order - 1)
        histories: list[np.ndarray] = []
        targets: list[int] = []
        words = 0
        for prompt in prompts:
            tokens = whitespace_words(prompt)
            ids = [self.bos] * width + [self.id_of(t) for t in tokens] + [self.eos]
            histories.append(sliding_window_view(np.asarray(ids[:-1], dtype=np.int64), width))
            targets.extend(ids[width:])
            words += len(tokens)
        if not targets:
            raise ValueError("no prompts to evaluate")
        target = np.asarray(targets, dtype=np.int64)
        probabilities = self.probability(np.concatenate(histories), target)
        nll = float(-np.log(probabilities).sum())
        oov = int(np.count_nonzero(target == UNKNOWN))
        return {
            "token_perplexity": math.exp(nll / len(target)),
            "word_perplexity": math.exp(nll / max(1, words)),
            "prompts": float(len(prompts)),
            "tokens": float(len(target)),
            "words": float(words),
            "oov_rate": oov / len(target),
        }

    # ---------------------------------------------------------------- ranking
    def _id_range(self, partial: str) -> tuple[int, int]:
        """Ids of tokens starting with ``partial`` ([0, width) with </s> when it is empty)."""
        if not partial:
            return 0, self.width
        return self.vocab.prefix_range(partial)

    @staticmethod
    def _top_in_segment(level: Level, start: int, end: int, low: int, high: int) -> np.ndarray:
        """The likeliest successors with ids in [low, high) within one context's segment."""
        segment = level.words[start:end]
        first = start + int(np.searchsorted(segment, low))
        stop = start + int(np.searchsorted(segment, high))
        if stop - first > CANDIDATES_PER_ORDER:
            best = np.argpartition(-level.prob[first:stop], CANDIDATES_PER_ORDER)
            return level.words[first + best[:CANDIDATES_PER_ORDER]].astype(np.int64)
        return level.words[first:stop].astype(np.int64)

    def _unigram_top_uncached(self, low: int, high: int) -> np.ndarray:
        if high - low > CANDIDATES_PER_ORDER:
            best = np.argpartition(-self.unigram[low:high], CANDIDATES_PER_ORDER)
            return best[:CANDIDATES_PER_ORDER] + low
        return np.arange(low, high)

    def ranked(self, history: Sequence[int], partial: str) -> list[tuple[int, float]]:
        """Likely next tokens starting with ``partial``, best first, with their probabilities.

        Candidates are each order's likeliest successors of its context. Recent rankings are
        remembered: ghost text chains the same words again at the next keystroke.
        """
        ids, scores = self._ranked(tuple(history), partial)
        return list(zip(ids.tolist(), scores.tolist(), strict=True))

    def _ranked_uncached(
        self, history: tuple[int, ...], partial: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities), best first: kept as arrays, a tenth of the memory of pairs."""
        low, high = self._id_range(partial)
        if low >= high:
            return np.empty(0, dtype=np.int64), np.empty(0)
        row = np.asarray([history], dtype=np.int64)
        found: list[np.ndarray] = [self._unigram_top(low, high)]
        for order, level in enumerate(self.levels, start=2):
            if row.shape[1] < order - 1:
                break
            hit, at = self._context(row, order)
            if hit[0]:
                start, end = int(level.start[at[0]]), int(level.start[at[0] + 1])
                found.append(self._top_in_segment(level, start, end, low, high))
        candidates = np.unique(np.concatenate(found))
        candidates = candidates[candidates != self.bos]
        scores = self.probability(np.repeat(row, len(candidates), axis=0), candidates)
        order = np.argsort(-scores, kind="stable")
        return candidates[order], scores[order]

    # ---------------------------------------------------------------- completion
    def continuation(
        self,
        history: Sequence[int],
        partial: str,
        steps: int,
        rng: random.Random | None = None,
        top_k: int = 20,
    ) -> list[int]:
        """Up to ``steps`` tokens, the first completing ``partial``; greedy unless ``rng``."""
        history = list(history)
        chosen: list[int] = []
        for _ in range(steps):
            ranked = self.ranked(history, partial)
            if not ranked:
                break
            if rng is None:
                token = ranked[0][0]
            else:
                pool = ranked[:top_k]
                token = rng.choices([t for t, _ in pool], weights=[p for _, p in pool])[0]
            if token == self.eos:
                break
            chosen.append(token)
            history = [*history[1:], token]
            partial = ""
        return chosen
