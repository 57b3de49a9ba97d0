"""Personal statistics: the prompts this user wrote, and a word n-gram counted over them.

People reuse their own phrasing all the time, and the styles they write in (anime tags,
``(word:1.2)`` weights) are not the 2022 corpus the shipped statistics count. The user's
prompts are kept in the store (``personal/prompts.sqlite3``): local only, owner-only
permissions, every change one SQLite transaction (an interrupted import or a crash leaves the
previous prompts intact), and at most ``MAX_PROMPTS`` of them (the rarest, then the oldest,
are pruned past it). Positive and negative prompts are kept and counted apart.

Each distinct prompt counts once: saving a document again, or re-importing a folder, must not
make its words look more frequent than the user's writing does.

``PersonalLayer`` serves the statistics: the same interpolated Kneser-Ney machinery as the
corpus's (``model_store.ngram.counting``), rebuilt from the stored prompts on a background
thread after prompts are learned, so learning costs one small transaction and never waits for
counting. The statistics are kept in memory only; the prompts are their source of truth.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store import paths
from model_store.ngram import counting
from model_store.ngram.model import WordNgram

log = logging.getLogger(__name__)

MAX_PROMPTS = 100_000  # per store; past it the rarest, then oldest, prompts are pruned
MAX_PROMPT_CHARS = 4000  # longer "prompts" are pasted documents, not prompts
CHECKPOINT_AFTER = 1000  # prompts learned at once, past which the write-ahead log is emptied
ORDER = counting.MAX_ORDER
PRUNE_ABOVE = 20_000  # prompts; see ``count``
# With a handful of prompts most n-grams are seen once and Kneser-Ney's discount
# n1 / (n1 + 2 n2) reaches 1, which would discount every count away: a user's first prompts
# would teach nothing. Capping it keeps part of each count from the first prompt on.
MAX_DISCOUNT = 0.8
# A rebuild waits at least this many times its last duration after the previous one, so
# counting uses at most a fifth of a core while the user learns prompts one by one.
REBUILD_SPACING = 4.0
NEGATIVE_LABEL = re.compile(r"^\s*negative prompt:\s*", re.IGNORECASE)
PARAMETERS_LINE = re.compile(r"^\s*Steps:\s*\d", re.IGNORECASE)


def store_path(root: Path | None = None) -> Path:
    """The personal prompts' database in the store."""
    return (root if root is not None else paths.store_dir()) / "personal" / "prompts.sqlite3"


@dataclass(frozen=True)
class Prompts:
    """Prompts read from some text, positive and negative apart."""

    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.positive) + len(self.negative)

    def __add__(self, other: Prompts) -> Prompts:
        return Prompts(self.positive + other.positive, self.negative + other.negative)


def fold(text: str) -> str:
    """Whitespace folded to single spaces, as the corpus was cleaned."""
    return " ".join(text.split())


def split_lines(text: str) -> Prompts:
    """One prompt per line; a ``Negative prompt:`` line is negative, a ``Steps:`` line skipped."""
    positive: list[str] = []
    negative: list[str] = []
    for line in text.splitlines():
        if PARAMETERS_LINE.match(line):
            continue
        label = NEGATIVE_LABEL.match(line)
        target = negative if label else positive
        prompt = fold(line[label.end() :] if label else line)
        if prompt:
            target.append(prompt)
    return Prompts(tuple(positive), tuple(negative))


def split_parameters(text: str) -> Prompts:
    """A1111/Forge/SD.Next ``parameters`` text: the prompt (it may span lines), then
    ``Negative prompt: ...`` (it may span lines), then the ``Steps: ...`` line."""
    positive: list[str] = []
    negative: list[str] = []
    target = positive
    for line in text.splitlines():
        if PARAMETERS_LINE.match(line):
            break
        label = NEGATIVE_LABEL.match(line)
        if label:
            target = negative
            line = line[label.end() :]
        target.append(line)
    return Prompts(
        tuple(p for p in [fold(" ".join(positive))] if p),
        tuple(p for p in [fold(" ".join(negative))] if p),
    )


@dataclass(frozen=True)
class Learned:
    """What one learn did."""

    learned: int = 0  # new distinct prompts stored
    duplicates: int = 0  # already known (or repeated within the batch): not counted again
    refused: int = 0  # longer than MAX_PROMPT_CHARS
    pruned: int = 0  # old, rare prompts removed to stay within the bound


class PersonalStore:
    """The stored prompts; every method is one transaction, safe from several threads."""

    def __init__(self, path: Path | None = None, max_prompts: int = MAX_PROMPTS) -> None:
        if max_prompts < 1:
            raise ValueError(f"max_prompts must be at least 1, got {max_prompts}")
        self.path = path if path is not None else store_path()
        self.max_prompts = max_prompts
        self._lock = threading.Lock()
        self._db = _open(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def add(self, prompts: Prompts, now: float | None = None) -> Learned:
        """Store new prompts (all of them or, on any error, none); count the known ones."""
        now = time.time() if now is None else now
        learned = duplicates = refused = 0
        with self._transaction() as db:
            for negative, batch in ((False, prompts.positive), (True, prompts.negative)):
                for prompt in batch:
                    if len(prompt) > MAX_PROMPT_CHARS:
                        refused += 1
                        continue
                    inserted = db.execute(
                        "INSERT OR IGNORE INTO prompts (text, negative, uses, last_used) "
                        "VALUES (?, ?, 1, ?)",
                        (prompt, negative, now),
                    ).rowcount
                    if inserted:
                        learned += 1
                        continue
                    duplicates += 1
                    db.execute(
                        "UPDATE prompts SET uses = uses + 1, last_used = ? "
                        "WHERE text = ? AND negative = ?",
                        (now, prompt, negative),
                    )
            pruned = self._prune(db)
        if learned > CHECKPOINT_AFTER:  # give the write-ahead log's copy of a big import back
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Learned(learned, duplicates, refused, pruned)

    def _prune(self, db: sqlite3.Connection) -> int:
        (count,) = db.execute("SELECT count(*) FROM prompts").fetchone()
        excess = count - self.max_prompts
        if excess <= 0:
            return 0
        db.execute(
            "DELETE FROM prompts WHERE rowid IN "
            "(SELECT rowid FROM prompts ORDER BY uses, last_used, rowid LIMIT ?)",
            (excess,),
        )
        return excess

    def prompts(self, negative: bool) -> list[str]:
        """The stored prompts of one kind, in the order they were first learned."""
        with self._lock:
            rows = self._db.execute(
                "SELECT text FROM prompts WHERE negative = ? ORDER BY rowid", (negative,)
            ).fetchall()
        return [text for (text,) in rows]

    def forget(self, containing: str | None = None) -> int:
        """Remove every prompt, or those containing ``containing`` (ignoring case)."""
        with self._transaction() as db:
            if containing is None:
                return db.execute("DELETE FROM prompts").rowcount
            pattern = "%" + containing.replace("\\", "\\\\").replace("%", "\\%") + "%"
            pattern = pattern.replace("_", "\\_")
            return db.execute(
                "DELETE FROM prompts WHERE text LIKE ? ESCAPE '\\'", (pattern,)
            ).rowcount

    def counts(self) -> tuple[int, int]:
        """(positive, negative) prompts stored."""
        with self._lock:
            rows = dict(
                self._db.execute(
                    "SELECT negative, count(*) FROM prompts GROUP BY negative"
                ).fetchall()
            )
        return rows.get(0, 0), rows.get(1, 0)

    def version(self, wait: bool = True) -> int | None:
        """Changes when another connection (another process) changed the prompts; None
        without ``wait`` when this store is busy writing (completion must not wait for it)."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            (value,) = self._db.execute("PRAGMA data_version").fetchone()
        finally:
            self._lock.release()
        return int(value)

    def size_bytes(self) -> int:
        """The database on disk, its write-ahead log included."""
        return sum(
            path.stat().st_size
            for path in (self.path, self.path.with_name(self.path.name + "-wal"))
            if path.exists()
        )


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating, owner-only) the database; SQLite gives its journal the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)
    db = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    db.isolation_level = ""  # transactions opened by ``with db`` (autocommit off)
    db.execute("PRAGMA journal_mode = WAL")  # a learn commits without waiting for the disk
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS prompts ("
        " text TEXT NOT NULL, negative INTEGER NOT NULL, uses INTEGER NOT NULL,"
        " last_used REAL NOT NULL, UNIQUE (text, negative))"
    )
    db.commit()
    return db


# ------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class PersonalStats:
    """The user's statistics: the query model, and how often they wrote each context."""

    model: WordNgram
    pair_keys: np.ndarray  # sorted ``a * width + b`` of every two-word context (<s> included)
    pair_totals: np.ndarray  # c(a b .) of each
    word_totals: np.ndarray  # c(b .) by word id

    def written(self, words: Sequence[str]) -> int:
        """How often the user wrote the last two of ``words`` before another word (the last
        one alone when they never wrote that pair); 0 for a word they never wrote."""
        model = self.model
        *_, a, b = model.history(words)  # at least two ids: the order is at least 3
        if a >= 0 and b >= 0:
            key = a * model.width + b
            at = int(np.searchsorted(self.pair_keys, key))
            if at < len(self.pair_keys) and self.pair_keys[at] == key:
                return int(self.pair_totals[at])
        return int(self.word_totals[b]) if b >= 0 else 0


def count(prompts: Iterable[str], order: int = ORDER) -> PersonalStats | None:
    """Kneser-Ney statistics of the user's prompts (``model_store.ngram``, as the corpus's),
    or None for none.

    Every n-gram counts while the user has written few prompts; past ``PRUNE_ABOVE`` the
    4- and 5-grams seen once are pruned as the corpus's are (they took 56 MB at 100k prompts).
    """
    prompts = [p for p in prompts if p.split()]
    if not prompts:
        return None
    min_count = 1 if len(prompts) <= PRUNE_ABOVE else counting.MIN_COUNT
    counts = counting.count(prompts, order, min_count, max_discount=MAX_DISCOUNT)
    pairs, words = counts.orders[1], counts.orders[0]
    assert pairs.keys is not None
    return PersonalStats(counting.estimate(counts), pairs.keys, pairs.total, words.total)


@dataclass(frozen=True)
class Snapshot:
    """One kind's statistics as last counted; immutable, so readers need no lock."""

    stats: PersonalStats | None = None
    prompts: int = 0


class PersonalLayer:
    """Learns prompts into the store and keeps their statistics counted, off the caller's
    thread; ``snapshot`` is what completion reads."""

    CHECK_INTERVAL_S = 2.0  # how often a change by another process is looked for

    def __init__(self, store: PersonalStore) -> None:
        self.store = store
        self._snapshots = {False: Snapshot(), True: Snapshot()}
        self.generation = 0  # changes with every new snapshot (rankings made before are stale)
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._closed = False
        self._version = store.version() or 0
        self._checked = time.monotonic()
        self._last_build_s = 0.0
        self._thread = threading.Thread(target=self._run, name="personal-stats", daemon=True)
        self._wanted.set()  # count what is stored already
        self._thread.start()

    @classmethod
    def open(cls, root: Path | None = None) -> PersonalLayer:
        return cls(PersonalStore(store_path(root)))

    def snapshot(self, negative: bool) -> Snapshot:
        """The statistics to complete with; asks for a recount when another process (an
        import, a forget) changed the prompts since the last look."""
        now = time.monotonic()
        if now - self._checked > self.CHECK_INTERVAL_S:
            self._checked = now
            version = self.store.version(wait=False)
            if version is not None and version != self._version:
                self._version = version
                self._wanted.set()
        return self._snapshots[negative]

    def learn(self, prompts: Prompts) -> Learned:
        """Store the prompts; their statistics follow on the background thread."""
        learned = self.store.add(prompts)
        if learned.learned or learned.pruned:
            self._idle.clear()
            self._wanted.set()
        return learned

    def forget(self, containing: str | None = None) -> int:
        removed = self.store.forget(containing)
        self._idle.clear()
        self._wanted.set()
        return removed

    def counted(self) -> tuple[int, int]:
        """(positive, negative) prompts in the statistics now being served."""
        return self._snapshots[False].prompts, self._snapshots[True].prompts

    def wait_counted(self, timeout: float) -> bool:
        """Block until everything learned so far is counted (tests, benchmarks)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._closed = True
        self._wanted.set()
        self._thread.join(timeout=5)
        self.store.close()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closed:
                return
            self._wanted.clear()
            began = time.monotonic()
            try:
                self._recount()
            except Exception:  # a broken database must not take completion down with it
                log.exception("counting the personal prompts failed")
            self._last_build_s = time.monotonic() - began
            if not self._wanted.is_set():
                self._idle.set()
            time.sleep(min(REBUILD_SPACING * self._last_build_s, 30.0))

    def _recount(self) -> None:
        snapshots = {}
        for negative in (False, True):
            prompts = self.store.prompts(negative)
            snapshots[negative] = Snapshot(count(prompts), len(prompts))
        self._snapshots = snapshots
        self.generation += 1


def size_summary(store: PersonalStore) -> dict[str, float]:
    positive, negative = store.counts()
    return {
        "positive": positive,
        "negative": negative,
        "megabytes": round(store.size_bytes() / 2**20, 2),
    }


def frequent_phrases(prompts: Iterable[str], top: int = 10) -> list[tuple[str, int]]:
    """The most frequent comma-separated phrases of the prompts (for ``prompt-models
    personal``), with the number of prompts each appears in."""
    seen: dict[str, int] = {}
    for prompt in prompts:
        for phrase in {fold(part) for part in prompt.split(",")}:
            if phrase:
                seen[phrase] = seen.get(phrase, 0) + 1
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:top]
