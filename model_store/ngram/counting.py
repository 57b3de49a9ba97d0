"""Building the statistics: count a corpus's word n-grams, estimate Kneser-Ney, prune.

Counts are built with numpy over integer-coded n-grams (one pass of Python tokenising, the rest
vectorised). Smoothing is Chen & Goodman's interpolated Kneser-Ney, one discount per order,
D = n1 / (n1 + 2 n2):

  P3(c|a,b) = max(c(abc) - D3, 0) / c(ab.) + D3 N1+(ab.) / c(ab.) * P2(c|b)
  P2(c|b)   = max(N1+(.bc) - D2, 0) / N1+(.b.) + D2 N1+(b.)/N1+(.b.) * P1(c)
  P1(c)     = max(N1+(.c) - D1, 0) / N1+(..) + D1 N1+(.)/N1+(..) * 1/(V+2)

Bigrams that open a prompt (<s> c) use raw counts, since nothing precedes <s>. The uniform floor
spreads over the V words, </s> and one <unk>: an unseen word gets the probability of one
specific unseen type, which is roughly what a subword model pays to spell a rare word out, so
word perplexities stay comparable. Orders 4 and 5 interpolate over that trigram with absolute
discounting, one discount each: Pn(w|h) = max(c(hw) - Dn, 0) / c(h.) + gamma(h) * P(n-1)(w|h'),
where h' is h without its first word. The trigram keeps its raw counts beneath them, so
``limited(3)`` is exactly the classic trigram (the benchmark's baseline). n-grams of order 4 and
5 seen fewer than ``min_count`` times are pruned; gamma(h) takes their discounted mass, so every
context still sums to one. On this corpus the two orders raised the trigram's keystroke savings
by about 0.06 (docs/BENCHMARKS.md).

``estimate`` writes the result in backoff form (``model``), and ``prune`` makes it smaller by
relative entropy (Stolcke 1998): a successor goes when the model without it is closest to the
model with it, weighted by how often its context occurs; the backoff weights are then
re-normalised. That keeps the n-grams that change predictions, not merely the frequent ones.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from model_store.ngram.model import Level, SortedWords, WordNgram, lookup
from prompt_words import whitespace_words

MAX_ORDER = 5
MIN_COUNT = 2  # of the n-grams kept above the trigram
CHUNK = 2_000_000  # successors scored at once while estimating and pruning
TINY = 1e-30


def _discount(counts: np.ndarray) -> float:
    return discount_of(int(np.count_nonzero(counts == 1)), int(np.count_nonzero(counts == 2)))


def discount_of(n1: int, n2: int, cap: float = 1.0) -> float:
    """D = n1 / (n1 + 2 n2) from the numbers of n-grams seen once and twice, at most ``cap``."""
    if n1 == 0:
        return min(0.5, cap)
    return min(n1 / (n1 + 2 * n2), cap)


@dataclass(frozen=True)
class Counted:
    """One order's counts: contexts (as ``Level`` keys them), successors and their counts."""

    keys: np.ndarray | None  # None at order 2: context i is word i
    start: np.ndarray
    total: np.ndarray  # c(h.), pruned successors included
    words: np.ndarray
    counts: np.ndarray
    discount: float
    backoff: np.ndarray | None = None  # gamma(h) above the trigram (the pruned mass included)


@dataclass(frozen=True)
class Counts:
    vocab: list[str]
    unigram: np.ndarray
    unknown_probability: float
    orders: tuple[Counted, ...]  # 2, 3, ...


def build(prompts: Iterable[str], order: int = MAX_ORDER, min_count: int = MIN_COUNT) -> WordNgram:
    """The full statistics of ``prompts`` (``count`` then ``estimate``)."""
    return estimate(count(prompts, order, min_count))


def count(prompts: Iterable[str], order: int = MAX_ORDER, min_count: int = MIN_COUNT) -> Counts:
    """Count the n-grams of ``prompts`` up to ``order``; above the trigram, those seen fewer
    than ``min_count`` times are pruned."""
    if order < 3 or min_count < 1:
        raise ValueError(
            f"order must be at least 3 and min_count at least 1, got {order}, {min_count}"
        )
    vocab, ids = encode(prompts)
    width = len(vocab) + 2
    ids = with_markers(ids, width)
    targets = ids[2:] != width - 2  # a trigram never predicts <s>: drops those spanning prompts
    keys = (ids[:-2][targets] * width + ids[1:-1][targets]) * width + ids[2:][targets]
    del targets
    tri_keys, tri_counts = np.unique(keys, return_counts=True)
    del keys
    unigram, floor, levels = from_trigrams(tri_keys, tri_counts, width)
    for n in range(4, order + 1):
        levels.append(_higher_order(ids, n, levels, width, min_count))
    return Counts(vocab, unigram, floor, tuple(levels))


def encode(prompts: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """The sorted vocabulary of ``prompts`` and their words as ranks in it, each prompt
    opened by two -1 and closed by one -2 (``with_markers`` makes them <s> and </s>)."""
    index: dict[str, int] = {}
    setdefault = index.setdefault
    flat = array("i")
    for prompt in prompts:
        flat.extend((-1, -1))
        flat.extend([setdefault(t, len(index)) for t in whitespace_words(prompt)])
        flat.append(-2)
    vocab = sorted(index)
    rank = np.empty(len(vocab), dtype=np.int64)
    provisional = np.fromiter((index[word] for word in vocab), dtype=np.int64, count=len(vocab))
    rank[provisional] = np.arange(len(vocab))
    index.clear()
    ids = np.frombuffer(flat, dtype=np.int32).astype(np.int64)
    del flat
    words = ids >= 0
    ids[words] = rank[ids[words]]
    return vocab, ids


def with_markers(ids: np.ndarray, width: int) -> np.ndarray:
    """``ids`` with the -1 and -2 of ``encode`` made <s> and </s> (the last two ids)."""
    ids[ids == -1] = width - 2
    ids[ids == -2] = width - 1
    return ids


def from_trigrams(
    tri_keys: np.ndarray, tri_counts: np.ndarray, width: int
) -> tuple[np.ndarray, float, list[Counted]]:
    """The unigram, its floor and orders 2 and 3, all derived from the sorted trigram keys
    ``(a * width + b) * width + c`` and their counts."""
    bos = width - 2
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
    d1, d2, d3 = (_discount(c) for c in (continuation, bi_counts, tri_counts))
    total1 = continuation.sum()
    floor = d1 * np.count_nonzero(continuation) / total1 / width
    unigram = np.maximum(continuation - d1, 0) / total1 + floor
    unigram[bos] = 0.0
    levels = [
        Counted(None, ctx2_start, ctx2_total, bi_words, bi_counts, d2),
        Counted(ctx3_keys, ctx3_start, ctx3_total, tri_words, tri_counts, d3),
    ]
    return unigram, float(floor), levels


def _higher_order(
    ids: np.ndarray,
    order: int,
    lower: Sequence[Counted],
    width: int,
    min_count: int,
) -> Counted:
    """Count the n-grams of ``order`` in the padded id stream and prune the rare ones."""
    rows = window_starts(ids, order, width)
    columns = [ids[rows + column] for column in range(order)]
    del rows
    found, contexts, targets = context_keys(columns, lower, width)
    contexts, targets = contexts[found], targets[found]
    del found, columns
    sort = np.lexsort((targets, contexts))
    contexts, targets = contexts[sort], targets[sort]
    del sort
    first = np.ones(len(contexts), dtype=bool)
    first[1:] = (contexts[1:] != contexts[:-1]) | (targets[1:] != targets[:-1])
    at = np.flatnonzero(first)
    counts = np.diff(np.append(at, len(contexts)))
    return pruned(contexts[at], targets[at], counts, _discount(counts), min_count)


def window_starts(ids: np.ndarray, order: int, width: int) -> np.ndarray:
    """Where the n-grams of ``order`` that count start in the padded id stream: a window counts
    when its context holds no </s> (it would span two prompts) and it does not predict <s>."""
    span = len(ids) - order + 1
    bos, eos = width - 2, width - 1
    if span <= 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.concatenate(([0], np.cumsum(ids == eos)))
    inside = ends[order - 1 : order - 1 + span] == ends[:span]
    inside &= ids[order - 1 :] != bos
    return np.flatnonzero(inside)


def context_keys(
    columns: Sequence[np.ndarray], lower: Sequence[Counted], width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(found, context key, target) of n-grams given as word columns. A context is keyed
    through its parent in the orders below; one whose parent was pruned is not found."""
    order = len(columns)
    found, index = np.ones(len(columns[0]), dtype=bool), columns[0]
    for level, column in zip(lower[1:], range(1, order - 2), strict=False):
        assert level.keys is not None
        found, index = lookup(level.keys, np.where(found, index * width + columns[column], -1))
    return found, index * width + columns[order - 2], columns[order - 1]


def pruned(
    contexts: np.ndarray, targets: np.ndarray, counts: np.ndarray, discount: float, min_count: int
) -> Counted:
    """One order above the trigram from its distinct (context, target) pairs, sorted, and their
    counts: the n-grams seen fewer than ``min_count`` times go, their mass to the backoff."""
    if len(counts) == 0:
        return empty_order()
    keys, context_first = np.unique(contexts, return_index=True)
    total = np.add.reduceat(counts, context_first)
    kept = counts >= min_count
    kept_mass = np.add.reduceat(np.where(kept, counts - discount, 0.0), context_first)
    kept_per_context = np.add.reduceat(kept.astype(np.int64), context_first)
    useful = kept_per_context > 0  # a context whose successors were all pruned backs off
    return Counted(
        keys=keys[useful],
        start=np.concatenate(([0], np.cumsum(kept_per_context[useful]))),
        total=total[useful],
        words=targets[kept],
        counts=counts[kept],
        discount=discount,
        backoff=((total - kept_mass) / total)[useful],
    )


def empty_order() -> Counted:
    return Counted(
        keys=np.zeros(0, dtype=np.int64),
        start=np.zeros(1, dtype=np.int64),
        total=np.zeros(0),
        words=np.zeros(0, dtype=np.int64),
        counts=np.zeros(0, dtype=np.int64),
        discount=0.5,
        backoff=np.zeros(0),
    )


def _owners(start: np.ndarray) -> np.ndarray:
    """The context index of each successor."""
    return np.repeat(np.arange(len(start) - 1), np.diff(start))


def _context_rows(keys: np.ndarray, parents: np.ndarray, width: int) -> np.ndarray:
    """The word ids of contexts keyed ``parent * width + last``, from their parents' rows."""
    parent, last = np.divmod(keys, width)
    return np.concatenate((parents[parent], last[:, None]), axis=1)


def _lower(model: WordNgram, rows: np.ndarray, owners: np.ndarray, words: np.ndarray) -> np.ndarray:
    """P(w | h') under ``model`` for each successor ``w`` of the context ``rows[owner]``, h'
    being that context without its first word (the unigram when nothing is left)."""
    if rows.shape[1] == 1:
        return np.asarray(model.unigram[words], dtype=np.float64)
    result = np.empty(len(words))
    for first in range(0, len(words), CHUNK):
        part = slice(first, first + CHUNK)
        result[part] = model.probability(rows[owners[part], 1:], words[part])
    return result


def estimate(counts: Counts) -> WordNgram:
    """Interpolated Kneser-Ney, order by order, written as each n-gram's full probability and
    each context's backoff weight (the lower order's share)."""
    width = len(counts.vocab) + 2
    vocab = SortedWords.from_words(counts.vocab)
    model = WordNgram(vocab, counts.unigram, counts.unknown_probability, ())
    rows = np.arange(width, dtype=np.int64)[:, None]
    for counted in counts.orders:
        if counted.keys is not None:
            rows = _context_rows(counted.keys, rows, width)
        owners = _owners(counted.start)
        lower = _lower(model, rows, owners, counted.words)
        total = np.maximum(counted.total, 1).astype(np.float64)
        discounted = np.maximum(counted.counts - counted.discount, 0) / total[owners]
        if counted.backoff is None:  # orders 2 and 3: every successor is kept
            types = np.diff(counted.start)
            backoff = np.where(types > 0, counted.discount * types / total, 1.0)
        else:
            backoff = counted.backoff
        level = Level(
            keys=counted.keys,
            start=counted.start,
            backoff=backoff,
            words=counted.words,
            prob=discounted + backoff[owners] * lower,
        )
        model = replace(model, levels=(*model.levels, level))
    return model


def _context_probability(model: WordNgram, rows: np.ndarray) -> np.ndarray:
    """P(h) of each context row by the chain rule, as Stolcke weighs a context. Leading <s>
    padding counts as a prompt starting there (P(</s>) of the unigram); the rest is 1."""
    eos_share = float(model.unigram[np.array([model.eos])][0])
    result = np.ones(len(rows))
    for first in range(0, len(rows), CHUNK):
        part = rows[first : first + CHUNK]
        log_p = np.zeros(len(part))
        for column in range(part.shape[1]):
            word = part[:, column]
            padding = word == model.bos
            if column == 0:
                factor = np.where(padding, eos_share, model.unigram[np.maximum(word, 0)])
            else:
                factor = np.where(padding, 1.0, model.probability(part[:, :column], word))
            log_p += np.log(np.maximum(factor, TINY))
        result[first : first + CHUNK] = np.exp(log_p)
    return result


def _level_arrays(level: Level) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, words, prob) of a level as plain arrays."""
    start = np.asarray(level.start[0 : len(level.start)], dtype=np.int64)
    words = np.asarray(level.words[0 : len(level.words)], dtype=np.int64)
    prob = np.asarray(level.prob[0 : len(level.words)], dtype=np.float64)
    return start, words, prob


def _all_context_rows(model: WordNgram) -> Iterator[np.ndarray]:
    """The word ids of every context, order by order."""
    rows = np.arange(model.width, dtype=np.int64)[:, None]
    for level in model.levels:
        if level.keys is not None:
            rows = _context_rows(np.asarray(level.keys[0 : len(level.keys)]), rows, model.width)
        yield rows


def pruning_scores(full: WordNgram) -> list[np.ndarray]:
    """How much each successor's removal would change the model (relative entropy, Stolcke
    1998: judged against the unpruned model, weighed by its context's probability), order by
    order. Independent of the threshold: ``prune`` can reuse them for several sizes."""
    scores = []
    levels = zip(full.levels, _all_context_rows(full), strict=True)
    for order, (level, rows) in enumerate(levels, start=2):
        start, words, prob = _level_arrays(level)
        owners = _owners(start)
        contexts = len(start) - 1
        lower = _lower(replace(full, levels=full.levels[: order - 2]), rows, owners, words)
        seen = np.bincount(owners, prob, minlength=contexts)[owners]
        seen_lower = np.bincount(owners, lower, minlength=contexts)[owners]
        backoff = np.asarray(level.backoff[0:contexts], dtype=np.float64)[owners]
        without = np.maximum(1 - seen + prob, TINY) / np.maximum(1 - seen_lower + lower, TINY)
        scores.append(
            _context_probability(full, rows)[owners]
            * (
                prob * (np.log(prob) - np.log(np.maximum(without * lower, TINY)))
                + np.maximum(1 - seen, 0) * (np.log(np.maximum(backoff, TINY)) - np.log(without))
            )
        )
    return scores


def prune(
    full: WordNgram, threshold: float, scores: Sequence[np.ndarray] | None = None
) -> WordNgram:
    """Drop the successors whose ``pruning_scores`` are below ``threshold``, re-normalise the
    backoff weights, and drop the contexts left with nothing to say."""
    scores = pruning_scores(full) if scores is None else scores
    model = replace(full, levels=())
    for level, rows, score in zip(full.levels, _all_context_rows(full), scores, strict=True):
        start, words, prob = _level_arrays(level)
        owners = _owners(start)
        contexts = len(start) - 1
        kept = score >= threshold
        words, prob, owners = words[kept], prob[kept], owners[kept]
        # The backoff weight that makes each context sum to one over the pruned lower orders.
        lower_now = _lower(model, rows, owners, words)
        mass = np.bincount(owners, prob, minlength=contexts)
        mass_lower = np.bincount(owners, lower_now, minlength=contexts)
        renormalised = np.where(
            mass > 0, np.maximum(1 - mass, TINY) / np.maximum(1 - mass_lower, TINY), 1.0
        )
        pruned = Level(
            keys=None if level.keys is None else np.asarray(level.keys[0 : len(level.keys)]),
            start=np.concatenate(([0], np.cumsum(np.bincount(owners, minlength=contexts)))),
            backoff=renormalised,
            words=words,
            prob=prob,
        )
        model = replace(model, levels=(*model.levels, pruned))
    return replace(model, levels=_without_empty_contexts(model.levels, full.width))


def _without_empty_contexts(levels: Sequence[Level], width: int) -> tuple[Level, ...]:
    """Drop contexts (order 3 and up) with no successors and no longer context beneath them;
    they only back off with weight one. Keys of the order above are renumbered to match."""
    keep: list[np.ndarray | None] = [None] * len(levels)
    needed = None
    for n in range(len(levels) - 1, 0, -1):
        level = levels[n]
        mask = np.diff(np.asarray(level.start)) > 0
        if needed is not None:
            mask |= needed
        keep[n] = mask
        parents = np.asarray(level.keys)[mask] // width
        needed = np.zeros(levels[n - 1].contexts, dtype=bool)
        needed[parents] = True
    result = [levels[0]]
    renumber = None
    for n in range(1, len(levels)):
        level, mask = levels[n], keep[n]
        assert mask is not None and level.keys is not None
        keys = np.asarray(level.keys)[mask]
        if renumber is not None:
            parent, last = np.divmod(keys, width)
            keys = renumber[parent] * width + last
        sizes = np.diff(np.asarray(level.start))[mask]
        result.append(
            Level(
                keys=keys,
                start=np.concatenate(([0], np.cumsum(sizes))),
                backoff=np.asarray(level.backoff)[mask],
                words=level.words,
                prob=level.prob,
            )
        )
        renumber = np.cumsum(mask) - 1
    return tuple(result)
