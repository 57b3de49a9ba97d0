"""The user's own models and wildcards: LoRA and embedding files, wildcard text files.

Folders are scanned in a background thread, never on a keystroke: a request reads the last
scan, and at most once a second starts a check of the folders' modification times (a file
added or removed changes its folder's), which rescans when they moved. A folder of 10,000 LoRAs
costs a keystroke only that check's start (docs/BENCHMARKS.md). Trigger words are read from a
LoRA's safetensors header (kohya's ``ss_tag_frequency``, ``modelspec.trigger_phrase``) through
the ``safetensors`` library, which reads the header only, and are cached per file version.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
WILDCARD_SUFFIX = ".txt"
CHECK_INTERVAL_S = 1.0  # how often a request may start a check for changed folders
TRIGGER_WORDS = 12  # the most frequent training tags offered after a LoRA


class Names:
    """Names (relative paths without suffix, ``/``-separated) of found files, sorted without
    case once per scan, so that a keystroke after ``<lora:`` reads a slice, not 10,000 names."""

    def __init__(self, files: dict[str, Path] | None = None) -> None:
        self.files = files or {}
        self._sorted = sorted((name.casefold(), name) for name in self.files)
        self._keys = [key for key, _ in self._sorted]

    def starting(self, typed: str, limit: int) -> list[str]:
        """Up to ``limit`` names that start with ``typed`` (any case), in name order."""
        key = typed.casefold()
        at = bisect.bisect_left(self._keys, key)
        found = []
        for folded, name in self._sorted[at : at + limit]:
            if not folded.startswith(key):
                break
            found.append(name)
        return found


@dataclass(frozen=True)
class Found:
    """What a scan found."""

    loras: Names = field(default_factory=Names)
    embeddings: Names = field(default_factory=Names)
    wildcards: Names = field(default_factory=Names)
    stamps: tuple[tuple[str, int], ...] = ()  # every folder scanned and its mtime


def _files(roots: Iterable[str], suffixes: tuple[str, ...]) -> tuple[dict[str, Path], list[str]]:
    """Files under ``roots`` with one of ``suffixes`` by name, and the folders walked."""
    found: dict[str, Path] = {}
    folders: list[str] = []
    for root in roots:
        for folder, subfolders, names in os.walk(root, followlinks=True):
            subfolders.sort()
            folders.append(folder)
            for name in sorted(names):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in suffixes:
                    relative = os.path.relpath(os.path.join(folder, stem), root)
                    found.setdefault(relative.replace(os.sep, "/"), Path(folder, name))
    return found, folders


def _stamps(folders: Iterable[str]) -> tuple[tuple[str, int], ...]:
    stamps = []
    for folder in folders:
        try:
            stamps.append((folder, os.stat(folder).st_mtime_ns))
        except OSError:
            stamps.append((folder, -1))
    return tuple(stamps)


def scan(
    lora_dirs: Iterable[str], embedding_dirs: Iterable[str], wildcard_dirs: Iterable[str]
) -> Found:
    """Everything in the folders now (missing folders are watched for appearing)."""
    loras, lora_folders = _files(lora_dirs, MODEL_SUFFIXES)
    embeddings, embedding_folders = _files(embedding_dirs, MODEL_SUFFIXES)
    wildcards, wildcard_folders = _files(wildcard_dirs, (WILDCARD_SUFFIX,))
    roots = [*lora_dirs, *embedding_dirs, *wildcard_dirs]
    folders = dict.fromkeys([*roots, *lora_folders, *embedding_folders, *wildcard_folders])
    return Found(Names(loras), Names(embeddings), Names(wildcards), _stamps(folders))


class UserModels:
    """The last scan of the configured folders, kept fresh by a background thread."""

    def __init__(self) -> None:
        self._folders: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())
        self._found = Found()
        self._lock = threading.Lock()
        self._checking = False
        self._last_check = 0.0
        self._triggers: dict[tuple[Path, int, int], list[str]] = {}

    def configure(
        self,
        lora_dirs: tuple[str, ...],
        embedding_dirs: tuple[str, ...],
        wildcard_dirs: tuple[str, ...],
    ) -> None:
        """Use these folders from now on; scans them in the background when they changed."""
        folders = (lora_dirs, embedding_dirs, wildcard_dirs)
        with self._lock:
            if folders == self._folders:
                return
            self._folders = folders
            self._found = Found()
        self._start_check(force=True)

    @property
    def found(self) -> Found:
        """The last scan; may start a background check for changes (at most once a second)."""
        if time.monotonic() - self._last_check >= CHECK_INTERVAL_S:
            self._start_check(force=False)
        return self._found

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until no scan is running (tests and benchmarks); False if one still is."""
        deadline = time.monotonic() + timeout
        while self._checking and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._checking

    def _start_check(self, force: bool) -> None:
        with self._lock:
            if self._checking or not any(self._folders):
                return
            self._checking = True
            self._last_check = time.monotonic()
        threading.Thread(target=self._check, args=(force,), daemon=True, name="user-models").start()

    def _check(self, force: bool) -> None:
        try:
            folders = self._folders
            current = self._found
            if force or _stamps(folder for folder, _ in current.stamps) != current.stamps:
                found = scan(*folders)
                with self._lock:
                    if folders == self._folders:
                        self._found = found
        except Exception:  # an unreadable folder must not take completion down
            log.exception("scanning the user's model folders failed")
        finally:
            self._checking = False

    def trigger_words(self, name: str) -> list[str]:
        """A LoRA's trigger words, most frequent first ([] for unknown names and no metadata)."""
        path = self.found.loras.files.get(name)
        if path is None or path.suffix.lower() != ".safetensors":
            return []
        try:
            status = path.stat()
        except OSError:
            return []
        key = (path, status.st_mtime_ns, status.st_size)
        if key not in self._triggers:
            self._triggers[key] = read_trigger_words(path)
        return self._triggers[key]


def read_trigger_words(path: Path) -> list[str]:
    """Trigger words from a safetensors header, without loading any weights."""
    try:
        with safe_open(str(path), framework="numpy") as model:
            metadata = model.metadata() or {}
    except Exception as exc:  # a broken or foreign file: no words, and say why in the log
        log.warning("cannot read %s: %s", path, exc)
        return []
    words: list[str] = []
    phrase = metadata.get("modelspec.trigger_phrase", "")
    words += [word.strip() for word in phrase.split(",") if word.strip()]
    counts: Counter[str] = Counter()
    try:
        frequencies = json.loads(metadata.get("ss_tag_frequency", "{}"))
        for tags in frequencies.values():
            counts.update({str(tag).strip(): int(count) for tag, count in tags.items()})
    except (ValueError, AttributeError, TypeError):
        log.warning("%s: unreadable ss_tag_frequency", path)
    words += [tag for tag, _ in counts.most_common() if tag and tag not in words]
    return words[:TRIGGER_WORDS]
