"""Word statistics of a corpus: an interpolated Kneser-Ney word n-gram (up to 5 words).

It is the classic baseline the neural models are measured against (benchmarks/) and the
corpus statistics the completion engine can blend with its causal LM (server/engine/blend.py).
The store builds it once per corpus (``prompt-models stats``) under ``wordstats/``.

Tokens are whitespace-separated words exactly as typed: case and punctuation stay attached
("portrait," and "portrait" are different words). Measured on the first 100 KSR prompts this
beat splitting commas off as tokens of their own by 0.02-0.08 KSR: the attached comma lets
completions of a partial word offer "palette" and "palette," as separate candidates, and the
trigram context is not spent on commas.

Counts are built with numpy over integer-coded trigrams (word ids are assigned in sorted
string order, so "words starting with p" is a contiguous id range and completions of a
partial word are a contiguous slice of any context's successors). The tables are compact
because the server memory-maps them and every page it reads stays resident: each context's
successors are one segment of an int32 word array (bigram contexts indexed by word id,
trigram contexts found by binary search), not int64 keys per n-gram. A context of order
n > 3 is keyed by its parent (its first n-2 words, a context of order n-1) and its last word:
parent index * width + word.

Smoothing (Chen & Goodman's interpolated KN, one discount per order, D = n1 / (n1 + 2 n2)):
  P3(c|a,b) = max(c(abc) - D3, 0) / c(ab.) + D3 N1+(ab.) / c(ab.) * P2(c|b)
  P2(c|b)   = max(N1+(.bc) - D2, 0) / N1+(.b.) + D2 N1+(b.)/N1+(.b.) * P1(c)
  P1(c)     = max(N1+(.c) - D1, 0) / N1+(..) + D1 N1+(.)/N1+(..) * 1/(V+2)
A context never seen backs off to the next order. Bigrams that open a prompt (<s> c) use raw
counts, since nothing precedes <s>. The uniform floor spreads over the V words, </s> and one
<unk>: an unseen word gets the probability of one specific unseen type, which is roughly what
a subword model pays to spell a rare word out, so word perplexities stay comparable.

Orders 4 and 5 interpolate over that trigram with absolute discounting, one discount each:
  Pn(w|h) = max(c(hw) - Dn, 0) / c(h.) + gamma(h) * P(n-1)(w|h without its first word)
The trigram keeps its raw counts beneath them, so ``limited(3)`` is exactly the classic
trigram (the benchmark's baseline). n-grams of order 4 and 5 seen fewer than ``min_count``
times are pruned (most of them are seen once and they would triple the tables); gamma(h)
takes the pruned words' discounted mass, so every context still sums to one. On this corpus
the two orders raised the trigram's keystroke savings by about 0.06 (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from filelock import FileLock
from numpy.lib.stride_tricks import sliding_window_view

from model_store import paths
from model_store.corpus import Corpus

UNKNOWN = -1
FORMAT_VERSION = 4
MAX_ORDER = 5
MIN_COUNT = 2  # of the n-grams kept above the trigram
CANDIDATES_PER_ORDER = 24
REMEMBERED_ROWS = 32  # distinct contexts per lookup still answered from the context cache


def tokenize(text: str) -> list[str]:
    """Words as typed (whitespace-separated, punctuation attached)."""
    return text.split()


def split_typed(typed: str) -> tuple[list[str], str, int]:
    """(complete tokens, the partial word under the cursor, where that partial word starts)."""
    if not typed or typed[-1].isspace():
        return tokenize(typed), "", len(typed)
    tokens = tokenize(typed)
    partial = tokens[-1]
    return tokens[:-1], partial, len(typed) - len(partial)


def _discount(counts: np.ndarray) -> float:
    n1 = int(np.count_nonzero(counts == 1))
    n2 = int(np.count_nonzero(counts == 2))
    if n1 == 0:
        return 0.5
    return n1 / (n1 + 2 * n2)


class DiskArray:
    """A one-dimensional ``.npy`` array read piece by piece with ``pread``, never mapped.

    A memory map counts every page it touches as the server's resident memory, and the kernel
    maps 16 neighbouring pages on each fault: random lookups in the 4- and 5-gram tables made
    200 MB resident within three typed prompts. What ``pread`` reads stays in the page cache,
    shared and reclaimable. Sorted arrays are searched through every ``FENCE``-th key, kept in
    memory, and then one block of keys.
    """

    FENCE = 512
    SPAN = 4096  # indices this close together are read at once

    def __init__(self, path: Path) -> None:
        with path.open("rb") as header:
            version = np.lib.format.read_magic(header)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
            self._offset = header.tell()
        if len(shape) != 1 or fortran or dtype.hasobject:
            raise ValueError(f"{path}: not a flat array of numbers")
        self._file = path.open("rb")
        self.dtype = dtype
        self._size = shape[0]
        self._fence: np.ndarray | None = None

    def __len__(self) -> int:
        return self._size

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = max(0, min(stop, self._size) - start)
        data = os.pread(
            self._file.fileno(),
            count * self.dtype.itemsize,
            self._offset + start * self.dtype.itemsize,
        )
        return np.frombuffer(data, dtype=self.dtype)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        """A contiguous slice (one read), or the elements at an array of indices."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("only contiguous slices are read")
            return self._read(start, stop)
        index = np.asarray(key, dtype=np.int64)
        if index.size == 0:
            return np.zeros(index.shape, dtype=self.dtype)
        low, high = int(index.min()), int(index.max()) + 1
        if high - low <= self.SPAN:  # one read covers them (a ranking's words share a segment)
            return self._read(low, high)[index - low]
        unique, inverse = np.unique(index, return_inverse=True)
        values = np.array([self._read(int(i), int(i) + 1)[0] for i in unique], dtype=self.dtype)
        return values[inverse].reshape(index.shape)

    def searchsorted(self, query: np.ndarray) -> np.ndarray:
        """``np.searchsorted`` (left) for a sorted array."""
        if self._fence is None:  # read in large pieces: one pread per fence key took 0.1 s
            piece = self.FENCE * 1024
            pieces = [
                self._read(at, at + piece)[:: self.FENCE] for at in range(0, self._size, piece)
            ]
            self._fence = np.concatenate(pieces) if pieces else np.zeros(0, dtype=self.dtype)
        query = np.asarray(query)
        block = np.maximum(np.searchsorted(self._fence, query, side="right") - 1, 0)
        index = np.empty(query.shape, dtype=np.int64)
        for number in np.unique(block):
            rows = block == number
            first = int(number) * self.FENCE
            keys = self._read(first, first + self.FENCE)
            index[rows] = first + np.searchsorted(keys, query[rows])
        return index


def _lookup(keys: np.ndarray | DiskArray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of each query in a sorted key array; negative queries never match."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool), np.zeros(query.shape, dtype=np.int64)
    index = np.minimum(keys.searchsorted(query), len(keys) - 1)
    return (keys[index] == query) & (query >= 0), index


def _find_in_segments(
    words: np.ndarray | DiskArray,
    start: np.ndarray,
    end: np.ndarray,
    query: np.ndarray,
    active: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of each active query within its sorted segment ``words[start:end]``.

    Ranking asks about many words after one context (one searchsorted for all); the
    end-of-prompt scores and perplexity ask about a different context per word (one each).
    """
    if len(words) == 0 or not active.any():
        return np.zeros(query.shape, dtype=bool), np.zeros(query.shape, dtype=np.int64)
    first, last = int(start[active][0]), int(end[active][0])
    if (start[active] == first).all() and (end[active] == last).all():
        index = first + np.searchsorted(words[first:last], query)
    else:
        index = np.zeros(query.shape, dtype=np.int64)
        for row in np.flatnonzero(active):
            first, last = int(start[row]), int(end[row])
            index[row] = first + np.searchsorted(words[first:last], query[row])
    inside = active & (index < end)
    index = np.where(inside, index, 0)
    found = np.zeros(query.shape, dtype=bool)
    rows = np.flatnonzero(inside)  # read only these: the others' index 0 is far away
    found[rows] = words[index[rows]] == query[rows]
    return found, index


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


_ARRAYS = (
    "tri_words",
    "tri_counts",
    "ctx3_keys",
    "ctx3_total",
    "ctx3_start",
    "bi_words",
    "bi_counts",
    "ctx2_total",
    "ctx2_start",
    "unigram",
)


@dataclass(frozen=True)
class HigherOrder:
    """The pruned counts of one order above the trigram (see the module docstring).

    Context ``keys[i]`` (parent index * width + last word, sorted) has the successors
    ``words[start[i]:start[i + 1]]`` (sorted ids, ``counts`` beside them).
    """

    keys: np.ndarray | DiskArray  # int64
    start: np.ndarray | DiskArray  # int32, one more than contexts
    total: np.ndarray | DiskArray  # int32: c(h.), pruned successors included
    backoff: np.ndarray | DiskArray  # float32: gamma(h)
    words: np.ndarray | DiskArray  # int32
    counts: np.ndarray | DiskArray  # int32
    discount: float

    FIELDS = ("keys", "start", "total", "backoff", "words", "counts")


@dataclass
class KneserNeyNgram:
    """Count tables and discounts; see the module docstring.

    Trigram context ``ctx3_keys[i]`` (a * width + b, sorted) has the successors
    ``tri_words[ctx3_start[i]:ctx3_start[i + 1]]`` (sorted ids, ``tri_counts`` beside them);
    bigram context ``b`` (any id) has ``bi_words[ctx2_start[b]:ctx2_start[b + 1]]``;
    ``higher`` holds orders 4, 5, ... in turn.

    Histories are the ids before the predicted word, padded with <s>: ``history(words)``.
    """

    vocab: SortedWords
    tri_words: np.ndarray  # int32
    tri_counts: np.ndarray  # int32
    ctx3_keys: np.ndarray  # int64
    ctx3_total: np.ndarray  # int32: c(ab.)
    ctx3_start: np.ndarray  # int32, one more than contexts; segment sizes are N1+(ab.)
    bi_words: np.ndarray  # int32
    bi_counts: np.ndarray  # int32
    ctx2_total: np.ndarray  # int32 per id: c(b.)
    ctx2_start: np.ndarray  # int32 per id, then the end
    unigram: np.ndarray  # P1 over ids, <s> has 0
    unknown_probability: float
    discounts: tuple[float, float, float]
    higher: tuple[HigherOrder, ...] = ()

    def __post_init__(self) -> None:
        self.bos = len(self.vocab)
        self.eos = self.bos + 1
        self.width = self.bos + 2
        self.order = 3 + len(self.higher)
        self._unigram_top = lru_cache(maxsize=8192)(self._unigram_top_uncached)
        # Typing through a word asks about the same contexts at every keystroke.
        self._one_context = lru_cache(maxsize=8192)(self._one_context_uncached)
        self._ranked = lru_cache(maxsize=1024)(self._ranked_uncached)

    def limited(self, order: int) -> KneserNeyNgram:
        """The same statistics seen up to ``order`` words (3 is the classic trigram)."""
        if not 3 <= order <= self.order:
            raise ValueError(f"order must be from 3 to {self.order}, got {order}")
        return replace(self, higher=self.higher[: order - 3])

    # ---------------------------------------------------------------- probabilities
    def id_of(self, token: str) -> int:
        return self.vocab.index_of(token)

    def history(self, words: Sequence[str]) -> list[int]:
        """The ``order - 1`` ids before the next word: the last words, after <s> padding."""
        ids = [self.id_of(word) for word in words[-(self.order - 1) :]]
        return [self.bos] * (self.order - 1 - len(ids)) + ids

    def _context(self, history: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
        """(found, index) of each row's last ``order - 1`` ids among the contexts of ``order``.

        Each distinct context is looked up once: a ranking asks about one context many times.
        """
        columns = history[:, -(order - 1) :]
        if len(columns) == 0:
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
        a, b = columns[:, 0], columns[:, 1]
        found, index = _lookup(
            self.ctx3_keys, np.where((a >= 0) & (b >= 0), a * self.width + b, -1)
        )
        for level, column in zip(self.higher, range(2, order - 1), strict=False):
            word = columns[:, column]
            found, index = _lookup(
                level.keys, np.where(found & (word >= 0), index * self.width + word, -1)
            )
        return found, index

    def probability(self, history: np.ndarray, c: np.ndarray) -> np.ndarray:
        """P(c | history) for each row of ``history`` (at least two ids, UNKNOWN allowed)."""
        history = np.asarray(history, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        if history.ndim != 2 or history.shape[1] < 2:
            raise ValueError("a history is at least two ids (pad with <s>)")
        _, d2, d3 = self.discounts
        known_c = c >= 0
        p1 = np.where(known_c, self.unigram[np.maximum(c, 0)], self.unknown_probability)

        b = history[:, -1]
        known_b = b >= 0
        safe_b = np.maximum(b, 0)
        start2 = self.ctx2_start[safe_b].astype(np.int64)
        end2 = self.ctx2_start[safe_b + 1].astype(np.int64)
        found2 = known_b & (end2 > start2)
        hit2, at_bc = _find_in_segments(self.bi_words, start2, end2, c, found2 & known_c)
        count2 = np.where(hit2, self.bi_counts[at_bc], 0)
        total2 = np.where(found2, self.ctx2_total[safe_b], 1)
        types2 = np.where(found2, end2 - start2, 0)
        p2 = np.where(found2, (np.maximum(count2 - d2, 0) + d2 * types2 * p1) / total2, p1)

        found3, at3 = self._context(history, 3)
        start3 = np.where(found3, self.ctx3_start[at3], 0).astype(np.int64)
        end3 = np.where(found3, self.ctx3_start[at3 + 1], 0).astype(np.int64)
        hit3, at_abc = _find_in_segments(self.tri_words, start3, end3, c, found3 & known_c)
        count3 = np.where(hit3, self.tri_counts[at_abc], 0)
        total3 = np.where(found3, self.ctx3_total[at3], 1)
        types3 = end3 - start3
        p = np.where(found3, (np.maximum(count3 - d3, 0) + d3 * types3 * p2) / total3, p2)

        for order, level in enumerate(self.higher, start=4):
            if history.shape[1] < order - 1:
                break
            found, at = self._context(history, order)
            if not found.any():
                break  # no longer context is found either
            # The tables are read (from disk) at the found contexts only.
            known = at[found]
            start = np.zeros(len(c), dtype=np.int64)
            end = np.zeros(len(c), dtype=np.int64)
            start[found] = level.start[known]
            end[found] = level.start[known + 1]
            hit, at_word = _find_in_segments(level.words, start, end, c, found & known_c)
            count = np.zeros(len(c), dtype=np.int64)
            count[hit] = level.counts[at_word[hit]]
            total = np.ones(len(c), dtype=np.int64)
            total[found] = level.total[known]
            gamma = np.ones(len(c))
            gamma[found] = level.backoff[known]
            p = np.where(found, np.maximum(count - level.discount, 0) / total + gamma * p, p)
        return p

    def perplexity(self, prompts: Sequence[str]) -> dict[str, float]:
        """Perplexity per token (</s> included) and per whitespace word, plus the OOV rate."""
        width = self.order - 1
        histories: list[np.ndarray] = []
        targets: list[int] = []
        words = 0
        for prompt in prompts:
            tokens = tokenize(prompt)
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

    def _top_in_segment(
        self,
        words: np.ndarray | DiskArray,
        counts: np.ndarray | DiskArray,
        start: int,
        end: int,
        low: int,
        high: int,
    ) -> np.ndarray:
        """The most frequent successors with ids in [low, high) within one context's segment."""
        segment = words[start:end]
        first = start + int(np.searchsorted(segment, low))
        stop = start + int(np.searchsorted(segment, high))
        if stop - first > CANDIDATES_PER_ORDER:
            best = np.argpartition(-counts[first:stop], CANDIDATES_PER_ORDER)
            return words[first + best[:CANDIDATES_PER_ORDER]].astype(np.int64)
        return words[first:stop].astype(np.int64)

    def _unigram_top_uncached(self, low: int, high: int) -> np.ndarray:
        if high - low > CANDIDATES_PER_ORDER:
            best = np.argpartition(-self.unigram[low:high], CANDIDATES_PER_ORDER)
            return best[:CANDIDATES_PER_ORDER] + low
        return np.arange(low, high)

    def ranked(self, history: Sequence[int], partial: str) -> list[tuple[int, float]]:
        """Likely next tokens starting with ``partial``, best first, with their probabilities.

        Candidates are each order's most frequent successors of its context. Recent rankings
        are remembered: ghost text chains the same words again at the next keystroke.
        """
        return list(self._ranked(tuple(history), partial))

    def _ranked_uncached(
        self, history: tuple[int, ...], partial: str
    ) -> tuple[tuple[int, float], ...]:
        low, high = self._id_range(partial)
        if low >= high:
            return ()
        row = np.asarray([history], dtype=np.int64)
        found: list[np.ndarray] = [self._unigram_top(low, high)]
        b = int(row[0, -1])
        if b >= 0:
            start, end = int(self.ctx2_start[b]), int(self.ctx2_start[b + 1])
            found.append(self._top_in_segment(self.bi_words, self.bi_counts, start, end, low, high))
        tables = [(self.ctx3_start, self.tri_words, self.tri_counts)]
        tables += [(level.start, level.words, level.counts) for level in self.higher]
        for order, (starts, words, counts) in enumerate(tables, start=3):
            if row.shape[1] < order - 1:
                break
            hit, at = self._context(row, order)
            if not hit[0]:
                break  # a longer context is never found when its parent is not
            start, end = int(starts[at[0]]), int(starts[at[0] + 1])
            found.append(self._top_in_segment(words, counts, start, end, low, high))
        candidates = np.unique(np.concatenate(found))
        candidates = candidates[candidates != self.bos]
        scores = self.probability(np.repeat(row, len(candidates), axis=0), candidates)
        order = np.argsort(-scores, kind="stable")
        return tuple((int(candidates[i]), float(scores[i])) for i in order)

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


# -------------------------------------------------------------------- building and storing
def build(
    prompts: Iterable[str], order: int = MAX_ORDER, min_count: int = MIN_COUNT
) -> KneserNeyNgram:
    """Count the n-grams of ``prompts`` up to ``order`` (one pass of Python tokenising, the
    rest in numpy); above the trigram, those seen fewer than ``min_count`` times are pruned."""
    if order < 3 or min_count < 1:
        raise ValueError(
            f"order must be at least 3 and min_count at least 1, got {order}, {min_count}"
        )
    index: dict[str, int] = {}
    setdefault = index.setdefault
    flat = array("i")
    for prompt in prompts:
        flat.extend((-1, -1))
        flat.extend([setdefault(t, len(index)) for t in prompt.split()])
        flat.append(-2)
    vocab = sorted(index)
    rank = np.empty(len(vocab), dtype=np.int64)
    provisional = np.fromiter((index[word] for word in vocab), dtype=np.int64, count=len(vocab))
    rank[provisional] = np.arange(len(vocab))
    index.clear()
    bos, eos = len(vocab), len(vocab) + 1
    width = len(vocab) + 2

    ids = np.frombuffer(flat, dtype=np.int32).astype(np.int64)
    del flat
    words = ids >= 0
    ids[words] = rank[ids[words]]
    ids[ids == -1] = bos
    ids[ids == -2] = eos
    del words, rank

    targets = ids[2:] != bos  # a trigram never predicts <s>: drops those spanning two prompts
    keys = (ids[:-2][targets] * width + ids[1:-1][targets]) * width + ids[2:][targets]
    del targets
    tri_keys, tri_counts = np.unique(keys, return_counts=True)
    del keys

    ab = tri_keys // width
    ctx3_keys, ctx3_first = np.unique(ab, return_index=True)
    ctx3_total = np.add.reduceat(tri_counts, ctx3_first)
    ctx3_start = np.append(ctx3_first, len(tri_keys))

    bi_keys, bi_counts = np.unique(tri_keys % (width * width), return_counts=True)
    opening = bi_keys // width == bos
    bi_counts[opening] = tri_counts[ab == bos * width + bos]  # raw counts after <s>
    del ab
    tri_words = tri_keys % width
    del tri_keys
    bi_context = bi_keys // width
    ctx2_start = np.searchsorted(bi_context, np.arange(width + 1))
    ctx2_total = np.bincount(bi_context, weights=bi_counts, minlength=width)
    bi_words = bi_keys % width
    del bi_keys, bi_context

    continuation = np.bincount(bi_words, minlength=width).astype(np.float64)
    d1, d2, d3 = _discount(continuation), _discount(bi_counts), _discount(tri_counts)
    total1 = continuation.sum()
    floor = d1 * np.count_nonzero(continuation) / total1 / (len(vocab) + 2)
    unigram = np.maximum(continuation - d1, 0) / total1 + floor
    unigram[bos] = 0.0
    largest = max(len(tri_words), int(ctx3_total.max(initial=0)), int(ctx2_total.max(initial=0)))
    if largest >= 2**31:
        raise ValueError("the corpus is too large for 32-bit counts and offsets")
    higher: list[HigherOrder] = []
    for n in range(4, order + 1):
        higher.append(_higher_order(ids, n, ctx3_keys, higher, width, min_count))
    del ids
    return KneserNeyNgram(
        vocab=SortedWords.from_words(vocab),
        tri_words=tri_words.astype(np.int32),
        tri_counts=tri_counts.astype(np.int32),
        ctx3_keys=ctx3_keys,
        ctx3_total=ctx3_total.astype(np.int32),
        ctx3_start=ctx3_start.astype(np.int32),
        bi_words=bi_words.astype(np.int32),
        bi_counts=bi_counts.astype(np.int32),
        ctx2_total=ctx2_total.astype(np.int32),
        ctx2_start=ctx2_start.astype(np.int32),
        unigram=unigram,
        unknown_probability=float(floor),
        discounts=(d1, d2, d3),
        higher=tuple(higher),
    )


def _higher_order(
    ids: np.ndarray,
    order: int,
    ctx3_keys: np.ndarray,
    lower: Sequence[HigherOrder],
    width: int,
    min_count: int,
) -> HigherOrder:
    """Count the n-grams of ``order`` in the padded id stream and prune the rare ones.

    A window counts when its context holds no </s> (it would span two prompts) and it does
    not predict <s>. Its context is keyed through its parent, found in the orders below.
    """
    span = len(ids) - order + 1
    if span <= 0:
        return _empty_level()
    bos, eos = width - 2, width - 1
    ends = np.concatenate(([0], np.cumsum(ids == eos)))
    inside = ends[order - 1 : order - 1 + span] == ends[:span]  # no </s> in the context
    inside &= ids[order - 1 :] != bos
    rows = np.flatnonzero(inside)
    found, index = _lookup(ctx3_keys, ids[rows] * width + ids[rows + 1])
    for level, column in zip(lower, range(2, order - 1), strict=False):
        found, index = _lookup(level.keys, np.where(found, index * width + ids[rows + column], -1))
    rows, index = rows[found], index[found]  # a missing parent was pruned: so is this context
    contexts = index * width + ids[rows + order - 2]
    targets = ids[rows + order - 1]
    del rows, index, found
    sort = np.lexsort((targets, contexts))
    contexts, targets = contexts[sort], targets[sort]
    del sort
    first = np.ones(len(contexts), dtype=bool)
    first[1:] = (contexts[1:] != contexts[:-1]) | (targets[1:] != targets[:-1])
    at = np.flatnonzero(first)
    counts = np.diff(np.append(at, len(contexts)))
    contexts, targets = contexts[at], targets[at]
    if len(counts) == 0:
        return _empty_level()
    discount = _discount(counts)
    keys, context_first = np.unique(contexts, return_index=True)
    total = np.add.reduceat(counts, context_first)
    kept = counts >= min_count
    kept_mass = np.add.reduceat(np.where(kept, counts - discount, 0.0), context_first)
    kept_per_context = np.add.reduceat(kept.astype(np.int64), context_first)
    useful = kept_per_context > 0  # a context whose successors were all pruned backs off
    return HigherOrder(
        keys=keys[useful],
        start=np.concatenate(([0], np.cumsum(kept_per_context[useful]))).astype(np.int32),
        total=total[useful].astype(np.int32),
        backoff=((total - kept_mass) / total)[useful].astype(np.float32),
        words=targets[kept].astype(np.int32),
        counts=counts[kept].astype(np.int32),
        discount=discount,
    )


def _empty_level() -> HigherOrder:
    empty = np.zeros(0, dtype=np.int32)
    return HigherOrder(
        keys=np.zeros(0, dtype=np.int64),
        start=np.zeros(1, dtype=np.int32),
        total=empty,
        backoff=np.zeros(0, dtype=np.float32),
        words=empty,
        counts=empty,
        discount=0.5,
    )


def save(model: KneserNeyNgram, directory: Path) -> None:
    """Write to a temporary sibling and rename, so a crash never leaves a half cache."""
    tmp = directory.with_name(directory.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _ARRAYS:
        np.save(tmp / f"{name}.npy", getattr(model, name))
    for order, level in enumerate(model.higher, start=4):
        for name in HigherOrder.FIELDS:
            np.save(tmp / f"order{order}_{name}.npy", getattr(level, name))
    (tmp / "vocab.txt").write_bytes(model.vocab.lines)
    meta = {
        "unknown_probability": model.unknown_probability,
        "discounts": model.discounts,
        "higher_discounts": [level.discount for level in model.higher],
    }
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def load(directory: Path, mmap: bool = False) -> KneserNeyNgram:
    """Read saved statistics; ``mmap`` maps the arrays instead of reading them (fast start),
    and leaves the tables of orders 4 and 5, looked up at random, on disk (``DiskArray``)."""
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    mode = "r" if mmap else None
    # Plain ndarray views of the maps: indexing an np.memmap runs Python code per result
    # (``__array_finalize__``), which doubled the cost of a lookup.

    def array(name: str) -> np.ndarray:
        return np.load(directory / f"{name}.npy", mmap_mode=mode).view(np.ndarray)

    def table(name: str) -> np.ndarray | DiskArray:
        return DiskArray(directory / f"{name}.npy") if mmap else array(name)

    higher = tuple(
        HigherOrder(
            **{name: table(f"order{order}_{name}") for name in HigherOrder.FIELDS},
            discount=discount,
        )
        for order, discount in enumerate(meta["higher_discounts"], start=4)
    )
    return KneserNeyNgram(
        vocab=SortedWords((directory / "vocab.txt").read_bytes()),
        unknown_probability=meta["unknown_probability"],
        discounts=tuple(meta["discounts"]),
        higher=higher,
        **{name: array(name) for name in _ARRAYS},
    )


def stats_dir(corpus_sha256: str, root: Path | None = None) -> Path:
    """Where the statistics of the corpus with this digest live in the store."""
    base = root if root is not None else paths.store_dir() / "wordstats"
    return base / f"{corpus_sha256[:16]}-v{FORMAT_VERSION}"


def built_dir(corpus_sha256: str, root: Path | None = None) -> Path | None:
    """The directory of that corpus's statistics, or None when they were never built."""
    directory = stats_dir(corpus_sha256, root)
    return directory if (directory / "meta.json").is_file() else None


def find(corpus_sha256: str, root: Path | None = None) -> KneserNeyNgram | None:
    """The stored statistics of that corpus, memory-mapped, or None when never built."""
    directory = built_dir(corpus_sha256, root)
    return load(directory, mmap=True) if directory is not None else None


def build_cached(corpus: Corpus, root: Path | None = None) -> KneserNeyNgram:
    """The statistics of ``corpus``, built once (under a lock) and then loaded."""
    directory = stats_dir(corpus.sha256, root)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory.with_name(directory.name + ".lock"))):
        if (directory / "meta.json").is_file():
            return load(directory, mmap=True)
        save(build(corpus.prompts), directory)
    return load(directory, mmap=True)
