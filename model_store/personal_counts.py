"""The user's word n-gram counts, kept so that one prompt updates them in O(its n-grams).

Recounting every stored prompt after each learn cost 73 ms a prompt, and the estimated tables
160 MB, at 100k prompts. Here the counts themselves are kept, compactly, and probabilities
are computed from them at query time (interpolated Kneser-Ney, Chen & Goodman, as the
corpus's statistics, ``model_store.ngram.counting``):

    a(g)      = c(g) at the top order and for n-grams that start with <s> (nothing precedes
                <s>), else N1+(. g): how many distinct words were seen before g
    P_n(w|h)  = max(a(hw) - D_n, 0) / S(h) + D_n T(h) / S(h) P_{n-1}(w|h')
                with S(h) = sum_w a(hw), T(h) = |{w: a(hw) > 0}|; P_{n-1} alone where S(h) = 0
    P_0(w)    = uniform over the words, </s> and one unknown word

The lower orders' a(g) change only when an n-gram type appears or disappears, so a learned
(or pruned) prompt changes its own n-grams' counts and nothing else. One discount per order,
D_n = n1 / (n1 + 2 n2) of its adjusted counts (at most ``MAX_DISCOUNT``: over a handful of
prompts it would reach 1 and discount every count away), with n1 and n2 kept up to date.

Storage (19.5 MB for the 2.9M n-gram types of 100k prompts): order 1 is arrays by word id;
order n >= 2 is sorted keys, the index of the n-gram's first n - 1 words among order n - 1's
times ``WIDTH`` plus its last word (``Keys``: their low 32 bits), beside adjusted counts in 16
bits (32 once one needs them); order 2 keeps raw counts too (how often the user wrote a pair,
``written``). Counts of known n-grams change in place; new types wait in small dicts until
``merge`` inserts them. Each prompt is padded with ORDER - 1 <s>; the all-<s> n-grams are
kept as zero entries so that every context has an index. ``count`` builds the same counts
from scratch, vectorised (imports, forgetting, start-up).

One thread updates (``PersonalLayer``'s); queries from others hold ``lock``, which an update
holds for one prompt and a merge only to swap its arrays in.
"""

from __future__ import annotations

import bisect
import logging
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from model_store.ngram.counting import discount_of

log = logging.getLogger(__name__)
ORDER = 5
WIDTH = 1 << 24  # word ids stay below it (16M distinct words; past them: ``fits``)
BOS, EOS = 0, 1
MAX_DISCOUNT = 0.8
MERGE_AFTER = 20_000  # new n-gram types kept in dicts before they are inserted in the arrays
SCAN_SEGMENT = 64  # a context's successors filtered by prefix one by one up to this many
CANDIDATES_PER_ORDER = 24
UNKNOWN = -1
REMEMBERED_WORDS = 4096  # word ids kept at hand for queries
LOW_BITS = 0xFFFFFFFF


def fits(size: int, words: Sequence[str], known: Callable[[str], bool]) -> bool:
    """Whether a prompt's new words get ids below ``WIDTH`` beside the ``size`` ids given.

    A word id shares a key with its context's index, so one at ``WIDTH`` or past it would
    corrupt the counts. A prompt that does not fit is stored but not counted; since ids are
    never given back, one that did not fit never fits later, so uncounting it is skipped too.
    """
    if size + len(words) <= WIDTH:
        return True
    return size + len({word for word in words if not known(word)}) <= WIDTH


def discount(n1: int, n2: int) -> float:
    """D = n1 / (n1 + 2 n2) of one order's adjusted counts, at most ``MAX_DISCOUNT``."""
    return discount_of(n1, n2, MAX_DISCOUNT)


class Words(Sequence[str]):
    """The vocabulary: words by id in one UTF-8 buffer, and their ids in string order (UTF-8
    bytes sort as their strings do). As Python strings, a list and a dict, the 70k words of
    100k prompts took 10 MB; here about 1.5 MB."""

    def __init__(self, words: Sequence[str] = ()) -> None:
        """``words``: by id, after <s> and </s> (ids 0 and 1, not in the string order)."""
        encoded = [w.encode("utf-8") for w in ("<s>", "</s>", *words)]
        self._data = bytearray(b"".join(encoded))
        self._ends = array("q", np.cumsum([len(b) for b in encoded]).tolist())
        order = sorted(range(2, len(encoded)), key=encoded.__getitem__)
        self._order = np.asarray(order, dtype=np.int32)  # ids of the words in string order
        self._recent: dict[str, int] = {}  # found words: a search costs ~30 us, a keystroke
        # looks up the same few words dozens of times (ids never change once given)

    def __len__(self) -> int:
        return len(self._ends)

    def _bytes(self, index: int) -> bytes:
        return bytes(self._data[self._ends[index - 1] if index else 0 : self._ends[index]])

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._bytes(index).decode("utf-8")

    def _position(self, key: bytes) -> int:
        """Where ``key`` is, or would be inserted, in the string order."""
        order = self._order
        return bisect.bisect_left(range(len(order)), key, key=lambda k: self._bytes(order[k]))

    def index_of(self, word: str) -> int:
        """The word's id, or UNKNOWN."""
        found = self._recent.get(word)
        if found is not None:
            return found
        key = word.encode("utf-8")
        at = self._position(key)
        if at < len(self._order) and self._bytes(self._order[at]) == key:
            if len(self._recent) >= REMEMBERED_WORDS:
                self._recent.clear()
            found = self._recent[word] = int(self._order[at])
            return found
        return UNKNOWN

    def add(self, word: str) -> int:
        """The word's id, a new one for a new word."""
        key = word.encode("utf-8")
        at = self._position(key)
        if at < len(self._order) and self._bytes(self._order[at]) == key:
            return int(self._order[at])
        self._data += key
        self._ends.append(len(self._data))
        self._order = np.insert(self._order, at, len(self._ends) - 1)
        return len(self._ends) - 1

    def with_prefix(self, prefix: str) -> np.ndarray:
        """The ids of the words that start with ``prefix``."""
        key = prefix.encode("utf-8")
        low = self._position(key)
        high = self._position(key + b"\xff")  # no UTF-8 byte is 0xff
        return self._order[low:high].astype(np.int64)


class Keys:
    """Sorted int64 keys kept as their low 32 bits and where each high part starts: half
    the memory of the keys, as searchable. A context's successors never straddle a high part
    (``WIDTH`` divides 2**32)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.low = (keys & LOW_BITS).astype(np.uint32)
        pages = int(keys[-1] >> 32) + 1 if len(keys) else 0
        self.pages = np.searchsorted(keys >> 32, np.arange(pages + 1)).astype(np.int64)
        self._pages = self.pages.tolist()

    def __len__(self) -> int:
        return len(self.low)

    def searchsorted(self, key: int) -> int:
        """Where ``key`` is, or would be inserted."""
        high = key >> 32
        if high >= len(self._pages) - 1:
            return len(self.low)
        low, stop = self._pages[high], self._pages[high + 1]
        return low + int(self.low[low:stop].searchsorted(key & LOW_BITS))

    def find(self, key: int) -> int:
        """The index of ``key``, or -1."""
        high = key >> 32
        if high >= len(self._pages) - 1:
            return -1
        low, stop = self._pages[high], self._pages[high + 1]
        at = low + int(self.low[low:stop].searchsorted(key & LOW_BITS))
        return at if at < stop and int(self.low[at]) == key & LOW_BITS else -1

    def segment(self, low: int, high: int) -> np.ndarray:
        """keys[low:high] (all within one high part), as int64."""
        page = bisect.bisect_right(self._pages, low) - 1
        return (page << 32) | self.low[low:high].astype(np.int64)

    def everything(self) -> np.ndarray:
        """All the keys as int64 (merging)."""
        pages = np.repeat(np.arange(len(self.pages) - 1, dtype=np.int64), np.diff(self.pages))
        return (pages << 32) | self.low.astype(np.int64)


class NgramCounts:
    """Adjusted counts of orders 1..``order`` (see the module docstring) and their queries."""

    def __init__(self, order: int = ORDER) -> None:
        if order < 2:
            raise ValueError(f"order must be at least 2, got {order}")
        self.order = order
        self.vocab = Words()
        self.unigram = np.zeros(64, dtype=np.int64)  # a(w) by id
        self.unigram_raw = np.zeros(64, dtype=np.int64)  # c(w) by id
        self.keys = [Keys(np.zeros(0, np.int64)) for _ in range(order + 1)]  # 0, 1 unused
        self.adjusted = [np.zeros(0, np.uint16) for _ in range(order + 1)]
        self.pair_raw = np.zeros(0, np.uint16)  # c(a b) beside keys[2]
        # New types by order: word-id tuple -> [adjusted, raw]; contexts of new types ->
        # [their adjusted sum, how many are above 0, their last words].
        self._new: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(order + 1)]
        self._new_contexts: list[dict[tuple[int, ...], list]] = [{} for _ in range(order + 1)]
        self._singles = [0] * (order + 1)  # n1 by order
        self._doubles = [0] * (order + 1)  # n2 by order
        self._unigram_sum = 0
        self._unigram_types = 0
        self.prompts = 0
        self._full_logged = False
        # Updates hold it per prompt, queries per call; a merge is computed without it.
        self.lock = threading.Lock()
        self._add_structure()

    # ------------------------------------------------------------------ vocabulary
    def id_of(self, word: str) -> int:
        return self.vocab.index_of(word)

    def _word_id(self, word: str) -> int:
        found = self.vocab.add(word)
        if found >= len(self.unigram):
            self.unigram = _grown(self.unigram, 2 * found)
            self.unigram_raw = _grown(self.unigram_raw, 2 * found)
        return found

    @property
    def eos(self) -> int:
        return EOS

    def history(self, words: Sequence[str]) -> list[int]:
        """The ``order - 1`` ids before the next word, padded with <s>."""
        width = self.order - 1
        ids = [self.id_of(word) for word in words[-width:]] if width else []
        return [BOS] * (width - len(ids)) + ids

    # ------------------------------------------------------------------ updates
    def add(self, prompt: str) -> None:
        """Count one prompt (O(its n-grams))."""
        with self.lock:
            self._update(prompt, 1)

    def remove(self, prompt: str) -> None:
        """Uncount one prompt that was counted (a pruned one)."""
        with self.lock:
            self._update(prompt, -1)

    def _update(self, prompt: str, step: int) -> None:
        words = prompt.split()
        if not words:
            return
        if not fits(len(self.vocab), words, lambda word: self.id_of(word) != UNKNOWN):
            if not self._full_logged:
                log.warning("personal vocabulary full (%d words): new words go uncounted", WIDTH)
                self._full_logged = True
            return
        ids = [BOS] * (self.order - 1) + [self._word_id(w) for w in words] + [EOS]
        self.prompts += step
        keys = self.keys
        before = [0] * (self.order + 1)  # stored index, by order, of the n-gram ending before
        for end in range(self.order - 1, len(ids)):
            word = ids[end]
            here = [-1, word]  # stored index, by order, of the n-gram ending here (-1: none)
            for n in range(2, self.order + 1):
                context = before[n - 1]
                here.append(keys[n].find(context * WIDTH + word) if context >= 0 else -1)
            changed = True  # the longer n-gram's type appeared (disappeared): left extension
            for n in range(self.order, 0, -1):
                gram = tuple(ids[end - n + 1 : end + 1])
                if n == self.order or gram[0] == BOS or changed:
                    count = self._change(gram, here[n], step)
                    changed = count == 0 if step > 0 else count + step == 0
                else:
                    changed = False
            self.unigram_raw[word] += step
            if here[2] >= 0:
                self.pair_raw = _set(self.pair_raw, here[2], int(self.pair_raw[here[2]]) + step)
            else:
                self._new[2][tuple(ids[end - 1 : end + 1])][1] += step
            before = here

    def _change(self, gram: tuple[int, ...], at: int, step: int) -> int:
        """Add ``step`` to the adjusted count of ``gram`` (stored at ``at``, -1: a new type);
        the count before."""
        n = len(gram)
        if n == 1:
            before = int(self.unigram[at])
            self.unigram[at] = before + step
            self._unigram_sum += step
            self._unigram_types += (before == 0) - (before + step == 0)
        elif at >= 0:
            before = int(self.adjusted[n][at])
            self.adjusted[n] = _set(self.adjusted[n], at, before + step)
        else:
            entry = self._new[n].setdefault(gram, [0, 0])
            before = entry[0]
            entry[0] += step
            context = self._new_contexts[n].setdefault(gram[:-1], [0, 0, set()])
            context[0] += step
            context[1] += (before == 0) - (before + step == 0)
            context[2].add(gram[-1])
        self._count_of_counts(n, before, before + step)
        return before

    def _count_of_counts(self, n: int, before: int, after: int) -> None:
        self._singles[n] += (after == 1) - (before == 1)
        self._doubles[n] += (after == 2) - (before == 2)

    def _find(self, gram: tuple[int, ...], keys: Sequence[Keys] | None = None) -> int:
        """The index of ``gram`` in its order's arrays (``keys``: those), or -1."""
        keys = self.keys if keys is None else keys
        index = gram[0]
        for n in range(2, len(gram) + 1):
            index = keys[n].find(index * WIDTH + gram[n - 1])
            if index < 0:
                return -1
        return index

    def pending(self) -> int:
        """New types waiting for ``merge``."""
        return sum(len(new) for new in self._new)

    def merge(self) -> None:
        """Insert the new types into the sorted arrays and drop n-grams counted down to 0
        (vectorised, without the lock: only the thread that updates merges)."""
        keys_out: list[Keys] = self.keys[:2]
        adjusted_out: list[np.ndarray] = self.adjusted[:2]
        pair_raw = self.pair_raw
        remap: np.ndarray | None = None  # old index -> new index at the order below
        placed: dict[tuple[int, ...], int] = {}  # new index of the order below's new types
        for n in range(2, self.order + 1):
            keys, adjusted = self.keys[n].everything(), self.adjusted[n]
            if remap is not None and len(keys):
                keys = remap[keys // WIDTH] * WIDTH + keys % WIDTH
            new = self._new[n]
            grams = [g for g, (a, _) in new.items() if a > 0 or g == (BOS,) * n]
            new_keys = np.fromiter(
                (self._context_index(g, placed, keys_out) * WIDTH + g[-1] for g in grams),
                dtype=np.int64,
                count=len(grams),
            )
            new_adjusted = np.fromiter((new[g][0] for g in grams), np.int64, len(grams))
            keep = ((adjusted > 0) | (keys == 0)) & (keys >= 0)  # key 0: the all-<s> n-gram
            kept = int(keep.sum())
            all_keys = np.concatenate([keys[keep], new_keys])
            sort = np.argsort(all_keys, kind="stable")
            keys_out.append(Keys(all_keys[sort]))
            merged = np.concatenate([adjusted[keep].astype(np.int64), new_adjusted])
            adjusted_out.append(compact(merged[sort]))
            if n == 2:
                new_raw = np.fromiter((new[g][1] for g in grams), np.int64, len(grams))
                merged = np.concatenate([self.pair_raw[keep].astype(np.int64), new_raw])
                pair_raw = compact(merged[sort])
            where = np.empty(len(sort), dtype=np.int64)
            where[sort] = np.arange(len(sort))
            remap = np.full(len(keys), -1, dtype=np.int64)
            remap[np.flatnonzero(keep)] = where[:kept]
            placed = {g: int(i) for g, i in zip(grams, where[kept:], strict=True)}
        with self.lock:
            self.keys, self.adjusted, self.pair_raw = keys_out, adjusted_out, pair_raw
            for n in range(2, self.order + 1):
                self._new[n].clear()
                self._new_contexts[n].clear()

    def _context_index(
        self, gram: tuple[int, ...], placed: dict[tuple[int, ...], int], keys: Sequence[Keys]
    ) -> int:
        """The index of ``gram``'s first words among the merged ``keys`` of the order below."""
        if len(gram) == 2:
            return gram[0]
        found = placed.get(gram[:-1])
        return found if found is not None else self._find(gram[:-1], keys)

    def _refresh_totals(self) -> None:
        """The unigram's sums and every order's n1 and n2, from the arrays (after ``count``)."""
        self._unigram_sum = int(self.unigram.sum())
        self._unigram_types = int(np.count_nonzero(self.unigram))
        levels = [self.unigram, *self.adjusted[2:]]
        for n, counts in enumerate(levels, start=1):
            self._singles[n] = int(np.count_nonzero(counts == 1))
            self._doubles[n] = int(np.count_nonzero(counts == 2))

    def _add_structure(self) -> None:
        """The all-<s> n-grams below the top order, as zero entries: every context's index."""
        for n in range(2, self.order):
            self._new[n][(BOS,) * n] = [0, 0]
        self.merge()

    # ------------------------------------------------------------------ queries
    def written(self, words: Sequence[str]) -> int:
        """How often the user wrote the last two of ``words`` before another word (the last
        one alone when they never wrote that pair); 0 for a word they never wrote. Before
        the first word: how many prompts they wrote."""
        *_, a, b = [BOS, *self.history(words)]
        if b == BOS:
            return self.prompts
        with self.lock:
            return self._written(a, b)

    def _written(self, a: int, b: int) -> int:
        if a >= 0 and b >= 0:
            at = self._find((a, b))
            if at >= 0 and self.pair_raw[at]:
                return int(self.pair_raw[at])
            entry = self._new[2].get((a, b))
            if entry is not None and entry[1]:
                return entry[1]
        return int(self.unigram_raw[b]) if b > EOS else 0

    def probability(self, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """P(target | history) for each row (ids, UNKNOWN allowed), as WordNgram answers."""
        history = np.asarray(history, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        result = np.empty(len(targets))
        rows: dict[tuple[int, ...], list[int]] = {}
        for i, row in enumerate(history.tolist()):
            rows.setdefault(tuple(row), []).append(i)
        with self.lock:
            for row, at in rows.items():
                result[at] = self._probabilities(row, targets[at])
        return result

    def _probabilities(self, history: tuple[int, ...], targets: np.ndarray) -> np.ndarray:
        known = targets >= 0
        safe = np.where(known, targets, 0)
        words = len(self.vocab) + 1  # the words, </s> and one unknown word (and <s>: 0)
        total = max(self._unigram_sum, 0)
        if total:
            d1 = discount(self._singles[1], self._doubles[1])
            floor = d1 * self._unigram_types / total / words
            counts = self.unigram[np.minimum(safe, len(self.unigram) - 1)]
            p = np.where(known, np.maximum(counts - d1, 0) / total + floor, floor)
        else:
            p = np.full(len(targets), 1.0 / words)
        for n in range(2, self.order + 1):
            context = tuple(history[len(history) - n + 1 :])
            if any(word < 0 for word in context):
                continue
            counts, total, types = self._successors(context, safe)
            if total <= 0:
                continue
            d = discount(self._singles[n], self._doubles[n])
            counts = np.where(known, counts, 0)
            p = np.maximum(counts - d, 0) / total + d * types / total * p
        return p

    def _segment(self, context: tuple[int, ...]) -> tuple[int, int]:
        """[low, high): the stored successors of ``context`` in its order's arrays."""
        n = len(context) + 1
        index = self._find(context) if len(context) > 1 else context[0]
        if index < 0:
            return 0, 0
        keys = self.keys[n]
        return keys.searchsorted(index * WIDTH), keys.searchsorted((index + 1) * WIDTH)

    def _successors(
        self, context: tuple[int, ...], targets: np.ndarray
    ) -> tuple[np.ndarray, int, int]:
        """(a(context w) of each target, S(context), T(context))."""
        n = len(context) + 1
        low, high = self._segment(context)
        counts = np.zeros(len(targets), dtype=np.int64)
        total = types = 0
        if high > low:
            segment = self.adjusted[n][low:high]
            total, types = int(segment.sum(dtype=np.int64)), int(np.count_nonzero(segment))
            keys = self.keys[n].segment(low, high)
            wanted = (keys[0] // WIDTH) * WIDTH + targets
            at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
            counts = np.where(keys[at] == wanted, segment[at], 0).astype(np.int64)
        extra = self._new_contexts[n].get(context)
        if extra is not None:
            total += extra[0]
            types += extra[1]
            new = self._new[n]
            for i, word in enumerate(targets.tolist()):
                entry = new.get((*context, word))
                if entry is not None:
                    counts[i] += entry[0]
        return counts, total, types

    def ranked(self, history: Sequence[int], partial: str) -> list[tuple[int, float]]:
        """Likely next words starting with ``partial`` (their ids), best first, with their
        probabilities: each order's likeliest successors of its context."""
        with self.lock:
            return self._ranked(tuple(history), partial)

    def _ranked(self, history: tuple[int, ...], partial: str) -> list[tuple[int, float]]:
        if partial:
            ids = self.vocab.with_prefix(partial)
            if not len(ids):
                return []
        else:
            ids = np.arange(1, len(self.vocab), dtype=np.int64)
        candidates: set[int] = set()
        candidates.update(_top(ids, self.unigram[ids]))
        wanted = None  # by word id: whether it starts with ``partial``
        for n in range(2, self.order + 1):
            context = history[len(history) - n + 1 :]
            if any(word < 0 for word in context):
                continue
            start, stop = self._segment(context)
            if stop > start:
                words = self.keys[n].segment(start, stop) % WIDTH
                counts = self.adjusted[n][start:stop]
                if partial:
                    if stop - start <= SCAN_SEGMENT:
                        keep = np.array([self._starts(w, partial) for w in words.tolist()])
                    else:
                        if wanted is None:
                            wanted = np.zeros(len(self.vocab), dtype=bool)
                            wanted[ids] = True
                        keep = wanted[words]
                    words, counts = words[keep], counts[keep]
                candidates.update(_top(words, counts))
            extra = self._new_contexts[n].get(context)
            if extra is not None:
                candidates.update(w for w in extra[2] if self._starts(w, partial))
        candidates.discard(BOS)
        if not candidates:
            return []
        found = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        scores = self._probabilities(history, found)
        order = np.lexsort((found, -scores))
        return [(int(found[i]), float(scores[i])) for i in order if scores[i] > 0]

    def _starts(self, word: int, partial: str) -> bool:
        return word != EOS and self.vocab[word].startswith(partial) if partial else True

    # ------------------------------------------------------------------ inspection
    def as_dict(self) -> dict[tuple[str, ...], tuple[int, int]]:
        """Every n-gram with a count above 0: words -> (adjusted, raw; raw 0 above order 2)."""
        found: dict[tuple[str, ...], tuple[int, int]] = {}
        for word in range(len(self.vocab)):
            if self.unigram[word] or self.unigram_raw[word]:
                found[(self.vocab[word],)] = (int(self.unigram[word]), int(self.unigram_raw[word]))
        grams: list[list[tuple[int, ...]]] = [[], [(w,) for w in range(len(self.unigram))]]
        for n in range(2, self.order + 1):
            keys = self.keys[n].everything().tolist()
            grams.append([(*grams[n - 1][k // WIDTH], k % WIDTH) for k in keys])
            for at, gram in enumerate(grams[n]):
                raw = int(self.pair_raw[at]) if n == 2 else 0
                if self.adjusted[n][at] or raw:
                    found[tuple(self.vocab[w] for w in gram)] = (int(self.adjusted[n][at]), raw)
            for gram, (adjusted, raw) in self._new[n].items():
                if adjusted or raw:
                    found[tuple(self.vocab[w] for w in gram)] = (adjusted, raw if n == 2 else 0)
        return found


def compact(counts: np.ndarray) -> np.ndarray:
    """``counts`` in 16 bits, or 32 where one needs them (most counts are 1 or 2)."""
    fits = not len(counts) or int(counts.max()) <= np.iinfo(np.uint16).max
    return counts.astype(np.uint16 if fits else np.uint32)


def _set(counts: np.ndarray, at: int, value: int) -> np.ndarray:
    """``counts`` with ``counts[at] = value``, widened to 32 bits first if it needs them."""
    if value > np.iinfo(counts.dtype).max:
        counts = counts.astype(np.uint32)
    counts[at] = value
    return counts


def _grown(counts: np.ndarray, size: int) -> np.ndarray:
    """``counts`` with zeros up to ``size`` (never shorter)."""
    grown = np.zeros(max(size, len(counts)), dtype=counts.dtype)
    grown[: len(counts)] = counts
    return grown


def _top(words: np.ndarray, counts: np.ndarray) -> list[int]:
    """The words with the highest counts (above 0)."""
    words, counts = np.asarray(words), np.asarray(counts)
    if len(words) > CANDIDATES_PER_ORDER:
        best = np.argpartition(-counts.astype(np.int64), CANDIDATES_PER_ORDER)
        best = best[:CANDIDATES_PER_ORDER]
        words, counts = words[best], counts[best]
    return [int(w) for w, c in zip(words.tolist(), counts.tolist(), strict=True) if c > 0]


def count(prompts: Iterable[str], order: int = ORDER) -> NgramCounts:
    """The counts of ``prompts`` from scratch (vectorised; equal to adding them one by one)."""
    counts = NgramCounts(order)
    index: dict[str, int] = {}
    setdefault = index.setdefault
    flat = array("q")
    padding = [BOS] * (order - 1)
    for prompt in prompts:
        words = prompt.split()
        if words and fits(len(index) + 2, words, index.__contains__):
            flat.extend(padding)
            flat.extend([setdefault(w, len(index) + 2) for w in words])
            flat.append(EOS)
            counts.prompts += 1
    if not flat:
        return counts
    counts.vocab = Words(sorted(index, key=index.__getitem__))
    del index
    size = len(counts.vocab)
    counts.unigram = _grown(counts.unigram, max(size, 64))
    counts.unigram_raw = _grown(counts.unigram_raw, max(size, 64))
    ids = np.frombuffer(flat, dtype=np.int64).copy()
    del flat
    targets = np.flatnonzero(ids != BOS)
    below = ids  # the index, in order n - 1, of the n-gram ending at each position
    firsts = ids  # the first word of the n-gram of order n - 1 ending at each position
    starts_bos = np.zeros(0, dtype=bool)  # by type of order n - 1: whether it starts with <s>
    for n in range(2, order + 1):
        keys_at = np.zeros(len(ids), dtype=np.int64)  # <s> positions: the all-<s> n-gram (key 0)
        keys_at[targets] = below[targets - 1] * WIDTH + ids[targets]
        keys, raw = np.unique(keys_at[targets], return_counts=True)
        if n < order and (len(keys) == 0 or keys[0] != 0):
            keys, raw = np.insert(keys, 0, 0), np.insert(raw, 0, 0)
        index = np.searchsorted(keys, keys_at)
        del keys_at
        _continuation(counts, n - 1, below[targets], index[targets], ids[targets], starts_bos)
        shifted = np.full(len(ids), BOS, dtype=np.int64)
        shifted[targets] = firsts[targets - 1]
        firsts = shifted
        starts_bos = np.zeros(len(keys), dtype=bool)
        starts_bos[index[targets]] = firsts[targets] == BOS
        counts.keys[n] = Keys(keys)
        counts.adjusted[n] = raw  # raw; lower orders: _continuation
        if n == 2:
            counts.pair_raw = compact(raw)
        below = index
    counts.adjusted[order] = compact(counts.adjusted[order])
    counts._refresh_totals()
    return counts


def _continuation(
    counts: NgramCounts,
    n: int,
    shorter: np.ndarray,
    longer: np.ndarray,
    words: np.ndarray,
    starts_bos: np.ndarray,
) -> None:
    """Order ``n``'s adjusted counts: N1+(. g), the distinct longer types ending with g (from
    the indices of the n-grams and the (n + 1)-grams at each position), except for the
    n-grams that start with <s>, which keep their raw counts."""
    _, first = np.unique(longer, return_index=True)
    if n == 1:
        size = len(counts.unigram)
        counts.unigram = np.bincount(shorter[first], minlength=size).astype(np.int64)
        counts.unigram[BOS] = 0
        counts.unigram_raw = np.bincount(words, minlength=size).astype(np.int64)
        return
    continuation = np.bincount(shorter[first], minlength=len(counts.adjusted[n]))
    raw = counts.adjusted[n]
    counts.adjusted[n] = compact(np.where(starts_bos, raw, continuation))
