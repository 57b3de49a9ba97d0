"""Counting in shards: bounded memory, several processes, the same counts as ``counting.count``.

A corpus ten times ours would not fit in memory as one id stream (counting 1.9M prompts at once
holds 3.5 GB), so this counts as KenLM's ``lmplz`` does: sort, then merge on disk.

1. Shards of ``shard_prompts`` prompts are tokenised by the workers, each against its own
   vocabulary; the main process merges those into the sorted vocabulary.
2. Each shard counts its distinct n-grams of every order and writes them, sorted, to disk: a
   run of (first two words, remaining words, count), words packed base ``width``. Every n-gram
   lies inside one prompt, so counts of shards simply add up.
3. Order by order, the runs are merged by ranges of their first two words, sized to hold about
   ``merge_rows`` rows each, one range per task; a context (n-1 words, the first two included)
   never straddles two ranges, so pruning by count runs range by range too. Only the discount
   is global: it is summed over ranges before pruning. The orders below must be final before
   the next is merged, since an order-5 context is keyed through its order-4 parent.

Memory is bounded by the shard size and the range size (times the workers) plus the result.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice, pairwise
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import TypeVar

import numpy as np

from model_store.ngram.counting import (
    MAX_ORDER,
    MIN_COUNT,
    Counted,
    Counts,
    context_keys,
    discount_of,
    empty_order,
    encode,
    from_trigrams,
    pruned,
    window_starts,
    with_markers,
)

SHARD_PROMPTS = 100_000
MERGE_ROWS = 4_000_000  # rows of the runs merged at once by one worker (24 bytes each)
SAMPLES_PER_RUN = 1_000  # first-two-word values read from each run to choose the ranges

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Job:
    """What the workers of one phase share, set before the pool forks them (never pickled)."""

    folder: Path
    width: int = 0
    shards: int = 0
    lower: Sequence[Counted] = ()


_JOB = _Job()


def count(
    prompts: Iterable[str],
    order: int = MAX_ORDER,
    min_count: int = MIN_COUNT,
    *,
    workers: int = 1,
    shard_prompts: int = SHARD_PROMPTS,
    merge_rows: int = MERGE_ROWS,
    scratch: Path | None = None,
) -> Counts:
    """``counting.count(prompts, order, min_count)``, counted in shards by ``workers``
    processes with temporary runs under ``scratch`` (the system's temporary folder)."""
    if order < 3 or min_count < 1:
        raise ValueError(
            f"order must be at least 3 and min_count at least 1, got {order}, {min_count}"
        )
    if workers < 1 or shard_prompts < 1 or merge_rows < 1:
        raise ValueError(
            f"workers, shard size and merge size must be positive, got {workers}, "
            f"{shard_prompts}, {merge_rows}"
        )
    with tempfile.TemporaryDirectory(prefix="ngram-shards-", dir=scratch) as folder:
        _JOB.folder = Path(folder)
        _JOB.shards = 0
        words: set[str] = set()
        batches = _batches(prompts, shard_prompts)
        for shard_vocab in _map(_encode_shard, enumerate(batches), workers):
            words.update(shard_vocab)
            _JOB.shards += 1
        vocab = sorted(words)
        del words
        _JOB.width = len(vocab) + 2
        if _JOB.width**3 >= 2**63:  # three words are packed into one int64, as counting does
            raise ValueError(f"{len(vocab):,} words are too many to count (2,097,149 at most)")
        _save_word_maps(vocab)
        list(_map(_count_shard, [(shard, order) for shard in range(_JOB.shards)], workers))
        tri_keys, tri_counts = _merged_trigrams(workers, merge_rows)
        unigram, floor, levels = from_trigrams(tri_keys, tri_counts, _JOB.width)
        del tri_keys, tri_counts
        for n in range(4, order + 1):
            _JOB.lower = levels
            levels.append(_merged_order(n, workers, merge_rows, min_count))
        _JOB.lower = ()
    return Counts(vocab, unigram, floor, tuple(levels))


def _batches(prompts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(prompts)
    while batch := list(islice(iterator, size)):
        yield batch


def _map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[Result]:
    """``map`` in order over ``workers`` forked processes that see ``_JOB`` as it is now.
    At most two tasks per worker are in flight (``Pool.imap`` would read every item ahead,
    the whole corpus included)."""
    if workers == 1:
        yield from map(function, items)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque[AsyncResult[Result]] = deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _path(kind: str, *parts: int) -> Path:
    return _JOB.folder / ".".join((kind, *map(str, parts), "npy"))


def _encode_shard(task: tuple[int, list[str]]) -> list[str]:
    """Tokenise one shard against its own vocabulary; keep its ids and words, return its words."""
    shard, prompts = task
    vocab, ids = encode(prompts)
    np.save(_path("ids", shard), ids.astype(np.int32))
    _path("words", shard).write_text("\n".join(vocab), encoding="utf-8")
    return vocab


def _save_word_maps(vocab: list[str]) -> None:
    """For each shard, the global id of each of its words (no word holds a newline: words are
    split at whitespace)."""
    index = {word: rank for rank, word in enumerate(vocab)}
    for shard in range(_JOB.shards):
        text = _path("words", shard).read_text(encoding="utf-8")
        words = text.split("\n") if text else []
        np.save(_path("map", shard), np.fromiter(map(index.__getitem__, words), dtype=np.int64))


def _count_shard(task: tuple[int, int]) -> None:
    """Write one shard's distinct n-grams of orders 3 to ``order`` as sorted runs."""
    shard, order = task
    width = _JOB.width
    ids = np.load(_path("ids", shard)).astype(np.int64)
    words = ids >= 0
    ids[words] = np.load(_path("map", shard))[ids[words]]
    del words
    ids = with_markers(ids, width)
    for n in range(3, order + 1):
        # A trigram only needs not to predict <s>: its context never holds </s> then.
        rows = np.flatnonzero(ids[2:] != width - 2) if n == 3 else window_starts(ids, n, width)
        first = ids[rows] * width + ids[rows + 1]
        rest = np.zeros(len(rows), dtype=np.int64)
        for column in range(2, n):
            rest = rest * width + ids[rows + column]
        del rows
        np.save(_path("run", n, shard), _distinct(first, rest, n))


def _distinct(
    first: np.ndarray, rest: np.ndarray, order: int, counts: np.ndarray | None = None
) -> np.ndarray:
    """The distinct (first, rest) pairs of n-grams of ``order``, sorted, with their summed
    counts (one each when ``counts`` is None), as the rows of a 3 x n array."""
    span = _JOB.width ** (order - 2)
    if _JOB.width**order < 2**63:  # one int64 key holds the n-gram: a plain sort is faster
        key = first * span + rest
        if counts is None:
            key, summed = np.unique(key, return_counts=True)
            return np.stack((key // span, key % span, summed))
        sort = np.argsort(key)
    else:
        sort = np.lexsort((rest, first))
    first, rest = first[sort], rest[sort]
    weights = None if counts is None else counts[sort]
    del sort
    new = np.ones(len(first), dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (rest[1:] != rest[:-1])
    at = np.flatnonzero(new)
    del new
    if weights is None:
        summed = np.diff(np.append(at, len(first)))
    else:
        summed = np.add.reduceat(weights, at) if len(at) else weights[:0]
    return np.stack((first[at], rest[at], summed))


def _ranges(order: int, workers: int, merge_rows: int) -> list[tuple[int, int]]:
    """Ranges [lo, hi) of the first two words that split the runs of ``order`` into pieces of
    about ``merge_rows`` rows (at least one per worker), from a sample of each run."""
    samples, weights = [], []
    for shard in range(_JOB.shards):
        first = np.load(_path("run", order, shard), mmap_mode="r")[0]
        step = max(1, len(first) // SAMPLES_PER_RUN)
        samples.append(np.array(first[::step]))
        weights.append(np.full(len(samples[-1]), step))
    sample = np.concatenate(samples) if samples else np.zeros(0, dtype=np.int64)
    weight = np.concatenate(weights) if weights else np.zeros(0, dtype=np.int64)
    pieces = max(workers, -(-int(weight.sum()) // merge_rows))
    sort = np.argsort(sample, kind="stable")
    cumulative = np.cumsum(weight[sort])
    targets = cumulative[-1] * np.arange(1, pieces) / pieces if len(sample) else []
    cuts = np.unique(sample[sort][np.searchsorted(cumulative, targets)])
    bounds = [0, *cuts.tolist(), _JOB.width * _JOB.width]
    return [(lo, hi) for lo, hi in pairwise(bounds) if hi > lo]


def _merge_range(task: tuple[int, int, int]) -> np.ndarray:
    """The distinct n-grams of ``order`` whose first two words lie in [lo, hi), all shards
    summed, sorted."""
    order, lo, hi = task
    parts = []
    for shard in range(_JOB.shards):
        run = np.load(_path("run", order, shard), mmap_mode="r")
        start, stop = np.searchsorted(run[0], (lo, hi))
        parts.append(np.array(run[:, start:stop]))
    merged = np.concatenate(parts, axis=1)
    del parts
    return _distinct(merged[0], merged[1], order, merged[2])


def _merged_trigrams(workers: int, merge_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted trigram keys of the whole corpus and their counts."""
    tasks = [(3, lo, hi) for lo, hi in _ranges(3, workers, merge_rows)]
    keys, counts = [], []
    for first, rest, summed in _map(_merge_range, tasks, workers):
        keys.append(first * _JOB.width + rest)
        counts.append(summed)
    return np.concatenate(keys), np.concatenate(counts)


def _words(first: np.ndarray, rest: np.ndarray, order: int) -> list[np.ndarray]:
    """The word columns of n-grams packed as (first two words, the others)."""
    width = _JOB.width
    columns = []
    for _ in range(order - 2):
        rest, last = np.divmod(rest, width)
        columns.append(last)
    return [first // width, first % width, *reversed(columns)]


def _merge_and_key(task: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Merge one range of ``order``, key its contexts through their parents (dropping those
    whose parent was pruned) and save it; return its numbers of n-grams, of those seen once
    and of those seen twice."""
    piece, order, lo, hi = task
    first, rest, counts = _merge_range((order, lo, hi))
    found, contexts, targets = context_keys(_words(first, rest, order), _JOB.lower, _JOB.width)
    del first, rest
    counts = counts[found]
    np.save(_path("keyed", order, piece), np.stack((contexts[found], targets[found], counts)))
    return len(counts), int(np.count_nonzero(counts == 1)), int(np.count_nonzero(counts == 2))


def _prune_range(task: tuple[int, int, float, int]) -> Counted:
    piece, order, discount, min_count = task
    contexts, targets, counts = np.load(_path("keyed", order, piece))
    return pruned(contexts, targets, counts, discount, min_count)


def _merged_order(order: int, workers: int, merge_rows: int, min_count: int) -> Counted:
    """One order above the trigram, merged and pruned range by range."""
    ranges = _ranges(order, workers, merge_rows)
    tasks = [(piece, order, lo, hi) for piece, (lo, hi) in enumerate(ranges)]
    seen = list(_map(_merge_and_key, tasks, workers))
    discount = discount_of(sum(once for _, once, _ in seen), sum(twice for *_, twice in seen))
    filled = [(piece, order, discount, min_count) for piece, row in enumerate(seen) if row[0]]
    if not filled:
        return empty_order()
    return _joined(list(_map(_prune_range, filled, workers)), discount)


def _joined(pieces: list[Counted], discount: float) -> Counted:
    """Consecutive pieces of one order as one."""
    sizes = [np.diff(piece.start) for piece in pieces]
    backoffs = [piece.backoff for piece in pieces if piece.backoff is not None]
    return Counted(
        keys=np.concatenate([piece.keys for piece in pieces if piece.keys is not None]),
        start=np.concatenate(([0], np.cumsum(np.concatenate(sizes)))),
        total=np.concatenate([piece.total for piece in pieces]),
        words=np.concatenate([piece.words for piece in pieces]),
        counts=np.concatenate([piece.counts for piece in pieces]),
        discount=discount,
        backoff=np.concatenate(backoffs),
    )
