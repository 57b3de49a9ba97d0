"""Personal statistics: the prompts this user wrote, and a word n-gram counted over them.

People reuse their own phrasing all the time, and the styles they write in (anime tags,
``(word:1.2)`` weights) are not the 2022 corpus the shipped statistics count. The user's
prompts are kept in the store (``personal/prompts.sqlite3``): local only, owner-only
permissions, every change one SQLite transaction (an interrupted import or a crash leaves the
previous prompts intact), and at most ``MAX_PROMPTS`` of them (the rarest, then the oldest,
are pruned past it). Positive and negative prompts are kept and counted apart.

Each distinct prompt counts once: saving a document again, or re-importing a folder, must not
make its words look more frequent than the user's writing does.

``PersonalLayer`` serves the statistics: interpolated Kneser-Ney counts of the stored prompts
(``personal_counts``), which a background thread updates prompt by prompt as they are learned,
so learning costs one small transaction and never waits for counting. The counts are kept in
memory only (counted again at start-up); the prompts are their source of truth.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from model_store import paths
from model_store.personal_counts import MERGE_AFTER, NgramCounts, count

log = logging.getLogger(__name__)

MAX_PROMPTS = 100_000  # per store; past it the rarest, then oldest, prompts are pruned
MAX_PROMPT_CHARS = 4000  # longer "prompts" are pasted documents, not prompts
CHECKPOINT_AFTER = 1000  # prompts learned at once, past which the write-ahead log is emptied
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
        return self.add_changes(prompts, now)[0]

    def add_changes(
        self, prompts: Prompts, now: float | None = None
    ) -> tuple[Learned, Prompts, Prompts]:
        """``add``, and the prompts it stored and those it pruned (their statistics change)."""
        now = time.time() if now is None else now
        duplicates = refused = 0
        added: dict[bool, list[str]] = {False: [], True: []}
        with self._transaction() as db:
            for negative, batch in ((False, prompts.positive), (True, prompts.negative)):
                for prompt in batch:
                    if len(prompt) > MAX_PROMPT_CHARS:
                        refused += 1
                        continue
                    key = prompt_key(prompt, negative)
                    inserted = db.execute(
                        "INSERT OR IGNORE INTO prompts (key, text, negative, uses, last_used) "
                        "VALUES (?, ?, ?, 1, ?)",
                        (key, prompt, negative, now),
                    ).rowcount
                    if inserted:
                        added[negative].append(prompt)
                        continue
                    duplicates += 1
                    db.execute(
                        "UPDATE prompts SET uses = uses + 1, last_used = ? WHERE key = ?",
                        (now, key),
                    )
            removed = self._prune(db) if added[False] or added[True] else {False: [], True: []}
        for negative in (False, True):  # stored and pruned at once (past the bound): neither
            both = set(added[negative]) & set(removed[negative])
            added[negative] = [p for p in added[negative] if p not in both]
            removed[negative] = [p for p in removed[negative] if p not in both]
        learned = len(added[False]) + len(added[True])
        if learned > CHECKPOINT_AFTER:  # give the write-ahead log's copy of a big import back
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        result = Learned(learned, duplicates, refused, len(removed[False]) + len(removed[True]))
        return result, _prompts(added), _prompts(removed)

    def _prune(self, db: sqlite3.Connection) -> dict[bool, list[str]]:
        """Remove the rarest, then oldest, prompts past the bound; the removed ones."""
        (count,) = db.execute("SELECT count(*) FROM prompts").fetchone()
        excess = count - self.max_prompts
        removed: dict[bool, list[str]] = {False: [], True: []}
        if excess <= 0:
            return removed
        rows = db.execute(
            "DELETE FROM prompts WHERE rowid IN "
            "(SELECT rowid FROM prompts ORDER BY uses, last_used, rowid LIMIT ?) "
            "RETURNING text, negative",
            (excess,),
        ).fetchall()
        for text, negative in rows:
            removed[bool(negative)].append(text)
        return removed

    def prompts(self, negative: bool) -> list[str]:
        """The stored prompts of one kind, in the order they were first learned."""
        with self._lock:
            rows = self._db.execute(
                "SELECT text FROM prompts WHERE negative = ? ORDER BY rowid", (negative,)
            ).fetchall()
        return [text for (text,) in rows]

    def prompt_lines(self, negative: bool) -> str:
        """``prompts`` as one string, one per line: a recount reads 100k prompts without
        100k string objects, whose freed memory Python's allocator would keep."""
        with self._lock:
            (text,) = self._db.execute(
                "SELECT group_concat(text, char(10)) FROM "
                "(SELECT text FROM prompts WHERE negative = ? ORDER BY rowid)",
                (negative,),
            ).fetchone()
        return text or ""

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


def _prompts(kinds: dict[bool, list[str]]) -> Prompts:
    return Prompts(tuple(kinds[False]), tuple(kinds[True]))


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
    with db:
        _create(db)
    return db


def prompt_key(prompt: str, negative: bool) -> int:
    """A 64-bit hash of the prompt and its kind: what makes a stored prompt distinct.

    A unique index on the text itself kept a second copy of every prompt (67 MB at 100k
    prompts with the table); this index holds 8 bytes a prompt."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8, person=b"neg" * negative)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _create(db: sqlite3.Connection) -> None:
    """The table and its indexes; a store made before the key existed is converted."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(prompts)")}
    if columns and "key" not in columns:
        db.execute("ALTER TABLE prompts RENAME TO prompts_before_key")
    db.execute(
        "CREATE TABLE IF NOT EXISTS prompts ("
        " key INTEGER NOT NULL UNIQUE, text TEXT NOT NULL, negative INTEGER NOT NULL,"
        " uses INTEGER NOT NULL, last_used REAL NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS prompts_by_use ON prompts (uses, last_used)")
    if columns and "key" not in columns:
        rows = db.execute(
            "SELECT text, negative, uses, last_used FROM prompts_before_key ORDER BY rowid"
        ).fetchall()
        db.executemany(
            "INSERT OR IGNORE INTO prompts (key, text, negative, uses, last_used) "
            "VALUES (?, ?, ?, ?, ?)",
            [(prompt_key(t, bool(n)), t, n, u, last) for t, n, u, last in rows],
        )
        db.execute("DROP TABLE prompts_before_key")


# ------------------------------------------------------------------------ statistics
class PersonalLayer:
    """Learns prompts into the store and keeps their counts (``personal_counts``) up to
    date, off the caller's thread; ``counts`` is what completion reads.

    A learned or pruned prompt updates the counts in O(its n-grams); a big import, a forget
    or a change by another process counts the stored prompts again from scratch (vectorised).
    """

    CHECK_INTERVAL_S = 2.0  # how often a change by another process is looked for

    def __init__(self, store: PersonalStore) -> None:
        self.store = store
        self._counts = {False: NgramCounts(), True: NgramCounts()}
        self.generation = 0  # changes whenever the counts do (rankings made before are stale)
        self._work: queue.SimpleQueue[tuple[int, Change] | None] = queue.SimpleQueue()
        # Stored changes are numbered in commit order; a recount reads the store and the
        # number at once, and the changes up to it are in what it read.
        self._sequence = 0
        self._counted_through = -1
        self._order = threading.Lock()
        self._busy = 0  # work items queued or being applied
        self._busy_lock = threading.Lock()
        self._idle = threading.Event()
        self._version = store.version() or 0
        self._checked = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="personal-counts", daemon=True)
        self._queue(RECOUNT)  # count what is stored already
        self._thread.start()

    @classmethod
    def open(cls, root: Path | None = None) -> PersonalLayer:
        return cls(PersonalStore(store_path(root)))

    def counts(self, negative: bool) -> NgramCounts | None:
        """The counts to complete with (None before any prompt); asks for a recount when
        another process (an import, a forget) changed the prompts since the last look."""
        now = time.monotonic()
        if now - self._checked > self.CHECK_INTERVAL_S:
            self._checked = now
            version = self.store.version(wait=False)
            if version is not None and version != self._version:
                self._version = version
                self._queue(RECOUNT)
        found = self._counts[negative]
        return found if found.prompts > 0 else None

    def learn(self, prompts: Prompts) -> Learned:
        """Store the prompts; their counts follow on the background thread."""
        with self._order:
            learned, added, removed = self.store.add_changes(prompts)
            if len(added) > RECOUNT_ABOVE:
                self._queue(RECOUNT)
            elif added or removed:
                self._queue(Change(added, removed))
        return learned

    def forget(self, containing: str | None = None) -> int:
        with self._order:
            removed = self.store.forget(containing)
            self._queue(RECOUNT)
        return removed

    def counted(self) -> tuple[int, int]:
        """(positive, negative) prompts in the counts now being served."""
        return self._counts[False].prompts, self._counts[True].prompts

    def wait_counted(self, timeout: float) -> bool:
        """Block until everything learned so far is counted (tests, benchmarks)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=5)
        self.store.close()

    def _queue(self, work: Change) -> None:
        with self._busy_lock:
            self._busy += 1
            self._idle.clear()
            self._sequence += 1
            self._work.put((self._sequence, work))

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            sequence, work = item
            try:
                if work is RECOUNT:
                    self._recount()
                elif sequence > self._counted_through:
                    self._apply(work)
            except Exception:  # a broken database must not take completion down with it
                log.exception("counting the personal prompts failed")
            with self._busy_lock:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    def _apply(self, change: Change) -> None:
        """Count the added prompts and uncount the removed ones, one at a time: completion
        waits at most for one prompt's update."""
        for negative in (False, True):
            counts = self._counts[negative]
            for prompt in change.removed.negative if negative else change.removed.positive:
                counts.remove(prompt)
            for prompt in change.added.negative if negative else change.added.positive:
                counts.add(prompt)
            if counts.pending() > MERGE_AFTER:
                counts.merge()
        self.generation += 1

    def _recount(self) -> None:
        with self._order:
            stored = {negative: self.store.prompt_lines(negative) for negative in (False, True)}
            with self._busy_lock:
                self._counted_through = self._sequence
        for negative in (False, True):
            self._counts[negative] = count(lines(stored.pop(negative)))
        self.generation += 1
        trim_heap()


@dataclass(frozen=True)
class Change:
    """Prompts to count (newly stored) and to uncount (pruned); ``RECOUNT``: everything."""

    added: Prompts = Prompts()
    removed: Prompts = Prompts()


RECOUNT = Change()
RECOUNT_ABOVE = 2000  # prompts learned at once: counting everything again is faster


def lines(text: str) -> Iterator[str]:
    """The lines of ``text``, one string at a time."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


def trim_heap() -> None:
    """Give the heap that a big job freed back to the system (glibc keeps it otherwise: a
    100k-prompt recount left 200 MB resident for 25 MB of counts; the server calls it after
    building its engine too)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
