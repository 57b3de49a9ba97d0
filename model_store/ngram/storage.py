"""The statistics on disk: one ``.npy`` file per table, ``vocab.txt``, ``meta.json`` and the
store's ``manifest.json`` (sha256 of every file, checked before use).

Two flavours share the format. The full statistics (``prompt-models stats``) keep float32
probabilities; the pack shipped in the package stores each probability and backoff weight as
an 8-bit code into a 256-entry codebook of each table (KenLM's quantisation: bins of equal
population in the log domain, each bin's mean as its value), word ids in the narrowest
unsigned integer that holds them, and context offsets in 32 bits. Everything is memory-mapped
on load, nothing is unpacked, and nothing here needs torch.

The full statistics' tables of orders 4 and up are read piece by piece (``DiskArray``) instead
of mapped: every page a map touches counts as the server's resident memory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from model_store import paths
from model_store.checkpoint import CheckpointError, verify, write_manifest
from model_store.corpus import Corpus
from model_store.ngram import counting
from model_store.ngram.model import Level, SortedWords, Table, WordNgram

FORMAT = "prompt-autocompletion/word-ngram-1"
FORMAT_VERSION = 5  # in the store's directory names: older statistics are rebuilt
KIND = "word-ngram"
CODES = 256
META = "meta.json"
VOCAB = "vocab.txt"


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
        shape, dtype, self._offset = _header(path)
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


class Quantised:
    """A table of 8-bit codes read through its codebook: indexing gives the values."""

    def __init__(self, codes: Table, values: np.ndarray) -> None:
        self._codes = codes
        self._values = values

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self._values[self._codes[key]]


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, data offset) of a flat ``.npy`` file whose size matches its header."""
    with path.open("rb") as header:
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
        offset = header.tell()
    if len(shape) != 1 or fortran or dtype.hasobject:
        raise ValueError("not a flat array of numbers")
    expected = offset + shape[0] * dtype.itemsize
    if path.stat().st_size != expected:
        raise ValueError(f"{path.stat().st_size} bytes where its header needs {expected}")
    return shape, dtype, offset


def quantise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 codes, float32 codebook) for positive values: equal-population bins of their
    logarithms, each represented by its mean."""
    logs = np.log(np.maximum(np.asarray(values, dtype=np.float64), 1e-30))
    if len(logs) == 0:
        return np.zeros(0, dtype=np.uint8), np.ones(1, dtype=np.float32)
    edges = np.unique(np.quantile(logs, np.linspace(0, 1, CODES + 1)[1:-1]))
    codes = np.searchsorted(edges, logs, side="right")
    sums = np.bincount(codes, logs, minlength=len(edges) + 1)
    sizes = np.bincount(codes, minlength=len(edges) + 1)
    centres = np.where(sizes > 0, sums / np.maximum(sizes, 1), 0.0)
    return codes.astype(np.uint8), np.exp(centres).astype(np.float32)


def _narrowest(values: np.ndarray, limit: int) -> np.ndarray:
    """The values as the narrowest unsigned integer that holds ``limit``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if limit <= np.iinfo(dtype).max:
            return np.asarray(values).astype(dtype)
    raise ValueError(f"no integer type holds {limit}")


def save(model: WordNgram, directory: Path, *, quantised: bool, name: str, **fields: Any) -> None:
    """Write ``model`` and its manifest into a temporary sibling, then rename: a crash never
    leaves half a directory. ``fields`` go into the manifest (corpus, command, ...)."""
    tmp = directory.with_name(directory.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def put(stem: str, values: np.ndarray, probability: bool = False) -> None:
        if probability and quantised:
            codes, codebook = quantise(values)
            np.save(tmp / f"{stem}.npy", codes)
            np.save(tmp / f"{stem}.values.npy", codebook)
        elif probability:
            np.save(tmp / f"{stem}.npy", np.asarray(values, dtype=np.float32))
        else:
            np.save(tmp / f"{stem}.npy", values)

    put("unigram", np.asarray(model.unigram), probability=True)
    for order, level in enumerate(model.levels, start=2):
        stem = f"order{order}"
        if level.keys is not None:
            put(f"{stem}_keys", np.asarray(level.keys, dtype=np.int64))
        start = np.asarray(level.start)
        put(f"{stem}_start", _narrowest(start, int(start[-1]) if len(start) else 0))
        put(f"{stem}_backoff", np.asarray(level.backoff), probability=True)
        put(f"{stem}_words", _narrowest(np.asarray(level.words), model.width))
        put(f"{stem}_prob", np.asarray(level.prob), probability=True)
    (tmp / VOCAB).write_bytes(model.vocab.lines)
    meta = {
        "format": FORMAT,
        "order": model.order,
        "unknown_probability": model.unknown_probability,
        "quantised": quantised,
        "size": model.size,
    }
    (tmp / META).write_text(json.dumps(meta), encoding="utf-8")
    write_manifest(tmp, name, kind=KIND, **fields)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def load(
    directory: Path, repair_hint: str, *, name: str | None = None, piecewise: bool = True
) -> WordNgram:
    """Check saved statistics against their manifest and map them. ``piecewise`` reads the
    full statistics' tables of orders 4 and up piece by piece (the server's resident memory);
    bulk work over every n-gram (pruning) maps them instead.

    Raises CheckpointError naming the first missing, truncated or corrupt file and saying how
    to repair it (``repair_hint``).
    """
    verify(directory, name or directory.name, repair_hint)
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
        quantised = bool(meta["quantised"])
        order = int(meta["order"])
        unknown = float(meta["unknown_probability"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{directory / META}: unreadable ({exc}); {repair_hint}") from exc

    def table(stem: str, on_disk: bool = False) -> Any:
        path = directory / f"{stem}.npy"
        try:
            if on_disk:
                return DiskArray(path)
            _header(path)
            # A plain ndarray view of the map: indexing an np.memmap runs Python code per
            # result (``__array_finalize__``), which doubled the cost of a lookup.
            return np.load(path, mmap_mode="r").view(np.ndarray)
        except (OSError, ValueError, EOFError) as exc:
            raise CheckpointError(f"{path}: damaged ({exc}); {repair_hint}") from exc

    def probabilities(stem: str, on_disk: bool = False) -> Any:
        if quantised:
            return Quantised(table(stem, on_disk), np.asarray(table(f"{stem}.values")))
        return table(stem, on_disk)

    levels = []
    for n in range(2, order + 1):
        stem = f"order{n}"
        on_disk = piecewise and n >= 4 and not quantised
        levels.append(
            Level(
                keys=table(f"{stem}_keys", on_disk) if n >= 3 else None,
                start=table(f"{stem}_start", on_disk),
                backoff=probabilities(f"{stem}_backoff", on_disk),
                words=table(f"{stem}_words", on_disk),
                prob=probabilities(f"{stem}_prob", on_disk),
            )
        )
    try:
        vocab = SortedWords((directory / VOCAB).read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{directory / VOCAB}: unreadable ({exc}); {repair_hint}") from exc
    return WordNgram(vocab, probabilities("unigram"), unknown, tuple(levels))


# -------------------------------------------------------------------- in the store
def stats_dir(corpus_sha256: str, root: Path | None = None) -> Path:
    """Where the full statistics of the corpus with this digest live in the store."""
    base = root if root is not None else paths.store_dir() / "wordstats"
    return base / f"{corpus_sha256[:16]}-v{FORMAT_VERSION}"


def built_dir(corpus_sha256: str, root: Path | None = None) -> Path | None:
    """The directory of that corpus's full statistics, or None when they were never built."""
    directory = stats_dir(corpus_sha256, root)
    return directory if (directory / META).is_file() else None


def rebuild_hint(directory: Path) -> str:
    return (
        f"rebuild them with `rm -r {directory}` then `prompt-models stats --data TRAINING_CORPUS`"
    )


def find(corpus_sha256: str, root: Path | None = None) -> WordNgram | None:
    """The stored full statistics of that corpus, checked and mapped, or None when never built."""
    directory = built_dir(corpus_sha256, root)
    return load(directory, rebuild_hint(directory)) if directory is not None else None


def pruning_scores(directory: Path, model: WordNgram) -> list[np.ndarray]:
    """``counting.pruning_scores`` of the full statistics in ``directory`` (``model``, mapped
    whole), computed once (minutes on the shared corpus) and kept beside them."""
    cache = directory.with_name(directory.name + ".pruning")
    files = [cache / f"order{order}.npy" for order in range(2, model.order + 1)]
    if all(file.is_file() for file in files):
        return [np.load(file, mmap_mode="r") for file in files]
    scores = counting.pruning_scores(model)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file, score in zip(files, scores, strict=True):
        np.save(tmp / file.name, score.astype(np.float32))
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(tmp, cache)
    return scores


def corpus_fields(corpus: Corpus) -> dict[str, Any]:
    return {
        "corpus": {"name": corpus.name, "sha256": corpus.sha256, "prompts": len(corpus.prompts)}
    }


def build_cached(
    corpus: Corpus,
    root: Path | None = None,
    count: Callable[[Iterable[str]], counting.Counts] = counting.count,
) -> WordNgram:
    """The full statistics of ``corpus``, built once (under a lock) and then loaded; ``count``
    counts them (``sharded.count`` does in bounded memory, to the same result)."""
    directory = stats_dir(corpus.sha256, root)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory.with_name(directory.name + ".lock"))):
        if not (directory / META).is_file():
            model = counting.estimate(count(corpus.prompts))
            save(model, directory, quantised=False, name=directory.name, **corpus_fields(corpus))
    return load(directory, rebuild_hint(directory))
