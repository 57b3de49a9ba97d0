"""A checkpoint is a model directory plus ``manifest.json`` that describes and protects it.

The manifest records the sha256 of every file, so a flipped byte or a truncated download is
caught before the model is loaded. Hashing a 10 MB file costs ~20 ms, so verified digests are
cached by (path, size, mtime) and only changed files are hashed again.

Manifest fields: ``format``, ``name``, ``version``, ``created`` and ``files`` (path -> sha256
and size) always; then what the writer knows: ``kind``, ``preset``, ``corpus``, ``training``,
``source``, ``embedded_from``, ``dtype`` and ``metrics``. ``metrics`` is one flat mapping
measured on one evaluation set: ``data`` (and ``data_sha256`` when it is a file) names that set,
every other entry is a number, e.g. ``{"data": "dev.txt", "token_perplexity": 58.9,
"word_perplexity": 601.2, "prompts": 18967.0}``; `prompt-models list` reads
``metrics.token_perplexity``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store import paths

MANIFEST = "manifest.json"
FORMAT = "prompt-autocompletion/checkpoint-1"


class CheckpointError(Exception):
    """A checkpoint is missing, partial or corrupt; the message names the file and the repair."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified model directory and its manifest."""

    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", "causal-lm"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, name: str, **fields: Any) -> dict[str, Any]:
    """Hash every file under ``directory`` and write the manifest atomically."""
    _check_metrics(fields.get("metrics"))
    files = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = file.relative_to(directory).as_posix()
        files[rel] = {"sha256": sha256_file(file), "size": file.stat().st_size}
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": fields.pop("version", 1),
        "created": fields.pop("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        **fields,
        "files": files,
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _check_metrics(metrics: Any) -> None:
    """Refuse metrics in another shape than the module docstring's: readers would miss them."""
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise ValueError(f"manifest metrics must be a mapping, not {type(metrics).__name__}")
    for key, value in metrics.items():
        text_field = key in {"data", "data_sha256"} and isinstance(value, str)
        if not text_field and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(
                f"manifest metric {key!r} is {value!r}: metrics are one flat mapping of numbers "
                "plus 'data' naming the evaluation set"
            )


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; this is not a complete checkpoint") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: manifest has no file list")
    return manifest


def verify(directory: Path, name: str, repair_hint: str) -> Checkpoint:
    """Check every file against the manifest; raise CheckpointError naming the first bad one."""
    manifest = read_manifest(directory)
    cache = _DigestCache.load()
    for rel, entry in manifest["files"].items():
        file = directory / rel
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from checkpoint {name!r}; {repair_hint}")
        stat = file.stat()
        if stat.st_size != entry.get("size"):
            raise CheckpointError(
                f"{file}: size {stat.st_size} bytes, manifest says {entry.get('size')}; "
                f"checkpoint {name!r} is partial or corrupt; {repair_hint}"
            )
        if cache.get(file, stat) != entry.get("sha256"):
            actual = sha256_file(file)
            if actual != entry.get("sha256"):
                raise CheckpointError(
                    f"{file}: sha256 does not match the manifest; checkpoint {name!r} is "
                    f"corrupt; {repair_hint}"
                )
            cache.put(file, stat, actual)
    cache.save()
    return Checkpoint(name=name, path=directory, manifest=manifest)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary sibling, fsync, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _DigestCache:
    """sha256 of files already verified, keyed by path, size and mtime."""

    def __init__(self, path: Path, entries: dict[str, list[Any]]):
        self.path = path
        self.entries = entries
        self.dirty = False

    @classmethod
    def load(cls) -> _DigestCache:
        path = paths.cache_dir() / "digests.json"
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries)

    def get(self, file: Path, stat: os.stat_result) -> str | None:
        entry = self.entries.get(str(file.resolve()))
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return str(entry[2])
        return None

    def put(self, file: Path, stat: os.stat_result, digest: str) -> None:
        self.entries[str(file.resolve())] = [stat.st_size, stat.st_mtime_ns, digest]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.entries))
        except OSError:
            pass  # the cache only saves time; a read-only or full disk must not block loading
