"""Word statistics of a corpus: an interpolated Kneser-Ney word trigram.

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
trigram contexts found by binary search), not int64 keys per n-gram.

Smoothing (Chen & Goodman's interpolated KN, one discount per order, D = n1 / (n1 + 2 n2)):
  P3(c|a,b) = max(c(abc) - D3, 0) / c(ab.) + D3 N1+(ab.) / c(ab.) * P2(c|b)
  P2(c|b)   = max(N1+(.bc) - D2, 0) / N1+(.b.) + D2 N1+(b.)/N1+(.b.) * P1(c)
  P1(c)     = max(N1+(.c) - D1, 0) / N1+(..) + D1 N1+(.)/N1+(..) * 1/(V+2)
A context never seen backs off to the next order. Bigrams that open a prompt (<s> c) use raw
counts, since nothing precedes <s>. The uniform floor spreads over the V words, </s> and one
<unk>: an unseen word gets the probability of one specific unseen type, which is roughly what
a subword model pays to spell a rare word out, so word perplexities stay comparable.
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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from filelock import FileLock

from model_store import paths
from model_store.corpus import Corpus

UNKNOWN = -1
FORMAT_VERSION = 3
CANDIDATES_PER_ORDER = 24


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


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, index) of each query in a sorted key array; negative queries never match."""
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool), np.zeros(query.shape, dtype=np.int64)
    index = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (keys[index] == query) & (query >= 0), index


def _find_in_segments(
    words: np.ndarray, start: np.ndarray, end: np.ndarray, query: np.ndarray, active: np.ndarray
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
    return inside & (words[index] == query), index


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


@dataclass
class KneserNeyTrigram:
    """Count tables and the three discounts; see the module docstring.

    Trigram context ``ctx3_keys[i]`` (a * width + b, sorted) has the successors
    ``tri_words[ctx3_start[i]:ctx3_start[i + 1]]`` (sorted ids, ``tri_counts`` beside them);
    bigram context ``b`` (any id) has ``bi_words[ctx2_start[b]:ctx2_start[b + 1]]``.
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

    def __post_init__(self) -> None:
        self.bos = len(self.vocab)
        self.eos = self.bos + 1
        self.width = self.bos + 2
        self._unigram_top = lru_cache(maxsize=8192)(self._unigram_top_uncached)

    # ---------------------------------------------------------------- probabilities
    def id_of(self, token: str) -> int:
        return self.vocab.index_of(token)

    def probability(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """P(c | a b) for aligned id arrays (UNKNOWN = a word outside the vocabulary)."""
        _, d2, d3 = self.discounts
        known_c = c >= 0
        p1 = np.where(known_c, self.unigram[np.maximum(c, 0)], self.unknown_probability)

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

        known_ab = known_b & (a >= 0)
        found3, at3 = _lookup(self.ctx3_keys, np.where(known_ab, a * self.width + b, -1))
        start3 = np.where(found3, self.ctx3_start[at3], 0).astype(np.int64)
        end3 = np.where(found3, self.ctx3_start[at3 + 1], 0).astype(np.int64)
        hit3, at_abc = _find_in_segments(self.tri_words, start3, end3, c, found3 & known_c)
        count3 = np.where(hit3, self.tri_counts[at_abc], 0)
        total3 = np.where(found3, self.ctx3_total[at3], 1)
        types3 = end3 - start3
        return np.where(found3, (np.maximum(count3 - d3, 0) + d3 * types3 * p2) / total3, p2)

    def prompt_ids(self, prompt: str) -> list[int]:
        """<s> <s> tokens </s> as ids."""
        return [self.bos, self.bos, *(self.id_of(t) for t in tokenize(prompt)), self.eos]

    def perplexity(self, prompts: Sequence[str]) -> dict[str, float]:
        """Perplexity per token (</s> included) and per whitespace word, plus the OOV rate."""
        a: list[int] = []
        b: list[int] = []
        c: list[int] = []
        words = 0
        for prompt in prompts:
            ids = self.prompt_ids(prompt)
            a.extend(ids[:-2])
            b.extend(ids[1:-1])
            c.extend(ids[2:])
            words += len(prompt.split())
        if not c:
            raise ValueError("no prompts to evaluate")
        target = np.asarray(c, dtype=np.int64)
        probabilities = self.probability(
            np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), target
        )
        nll = float(-np.log(probabilities).sum())
        oov = int(np.count_nonzero(target == UNKNOWN))
        return {
            "token_perplexity": math.exp(nll / len(c)),
            "word_perplexity": math.exp(nll / max(1, words)),
            "prompts": float(len(prompts)),
            "tokens": float(len(c)),
            "words": float(words),
            "oov_rate": oov / len(c),
        }

    # ---------------------------------------------------------------- ranking
    def _id_range(self, partial: str) -> tuple[int, int]:
        """Ids of tokens starting with ``partial`` ([0, width) with </s> when it is empty)."""
        if not partial:
            return 0, self.width
        return self.vocab.prefix_range(partial)

    def _top_in_segment(
        self, words: np.ndarray, counts: np.ndarray, start: int, end: int, low: int, high: int
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

    def ranked(self, a: int, b: int, partial: str) -> list[tuple[int, float]]:
        """Likely next tokens starting with ``partial``, best first, with their probabilities."""
        low, high = self._id_range(partial)
        if low >= high:
            return []
        found: list[np.ndarray] = [self._unigram_top(low, high)]
        if b >= 0:
            start, end = int(self.ctx2_start[b]), int(self.ctx2_start[b + 1])
            found.append(self._top_in_segment(self.bi_words, self.bi_counts, start, end, low, high))
            hit, at = _lookup(self.ctx3_keys, np.array([a * self.width + b if a >= 0 else -1]))
            if hit[0]:
                start, end = int(self.ctx3_start[at[0]]), int(self.ctx3_start[at[0] + 1])
                found.append(
                    self._top_in_segment(self.tri_words, self.tri_counts, start, end, low, high)
                )
        candidates = np.unique(np.concatenate(found))
        candidates = candidates[candidates != self.bos]
        size = len(candidates)
        scores = self.probability(
            np.full(size, a, dtype=np.int64), np.full(size, b, dtype=np.int64), candidates
        )
        order = np.argsort(-scores, kind="stable")
        return [(int(candidates[i]), float(scores[i])) for i in order]

    # ---------------------------------------------------------------- completion
    def continuation(
        self,
        context: Sequence[int],
        partial: str,
        steps: int,
        rng: random.Random | None = None,
        top_k: int = 20,
    ) -> list[int]:
        """Up to ``steps`` tokens, the first completing ``partial``; greedy unless ``rng``."""
        a, b = ([self.bos, self.bos, *context])[-2:]
        chosen: list[int] = []
        for _ in range(steps):
            ranked = self.ranked(a, b, partial)
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
            a, b, partial = b, token, ""
        return chosen


# -------------------------------------------------------------------- building and storing
def build(prompts: Iterable[str]) -> KneserNeyTrigram:
    """Count trigrams of ``prompts`` (one pass of Python tokenising, the rest in numpy)."""
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
    del ids, targets
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
    return KneserNeyTrigram(
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
    )


def save(model: KneserNeyTrigram, directory: Path) -> None:
    """Write to a temporary sibling and rename, so a crash never leaves a half cache."""
    tmp = directory.with_name(directory.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _ARRAYS:
        np.save(tmp / f"{name}.npy", getattr(model, name))
    (tmp / "vocab.txt").write_bytes(model.vocab.lines)
    meta = {"unknown_probability": model.unknown_probability, "discounts": model.discounts}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def load(directory: Path, mmap: bool = False) -> KneserNeyTrigram:
    """Read saved statistics; ``mmap`` maps the arrays instead of reading them (fast start)."""
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    mode = "r" if mmap else None
    # Plain ndarray views of the maps: indexing an np.memmap runs Python code per result
    # (``__array_finalize__``), which doubled the cost of a lookup.
    arrays = {
        name: np.load(directory / f"{name}.npy", mmap_mode=mode).view(np.ndarray)
        for name in _ARRAYS
    }
    return KneserNeyTrigram(
        vocab=SortedWords((directory / "vocab.txt").read_bytes()),
        unknown_probability=meta["unknown_probability"],
        discounts=tuple(meta["discounts"]),
        **arrays,
    )


def stats_dir(corpus_sha256: str, root: Path | None = None) -> Path:
    """Where the statistics of the corpus with this digest live in the store."""
    base = root if root is not None else paths.store_dir() / "wordstats"
    return base / f"{corpus_sha256[:16]}-v{FORMAT_VERSION}"


def built_dir(corpus_sha256: str, root: Path | None = None) -> Path | None:
    """The directory of that corpus's statistics, or None when they were never built."""
    directory = stats_dir(corpus_sha256, root)
    return directory if (directory / "meta.json").is_file() else None


def find(corpus_sha256: str, root: Path | None = None) -> KneserNeyTrigram | None:
    """The stored statistics of that corpus, memory-mapped, or None when never built."""
    directory = built_dir(corpus_sha256, root)
    return load(directory, mmap=True) if directory is not None else None


def build_cached(corpus: Corpus, root: Path | None = None) -> KneserNeyTrigram:
    """The statistics of ``corpus``, built once (under a lock) and then loaded."""
    directory = stats_dir(corpus.sha256, root)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory.with_name(directory.name + ".lock"))):
        if (directory / "meta.json").is_file():
            return load(directory, mmap=True)
        save(build(corpus.prompts), directory)
    return load(directory, mmap=True)
