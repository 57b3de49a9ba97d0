"""A checkpoint is a model directory plus ``manifest.json`` that describes and protects it.

The manifest records the sha256 of every file, so a flipped byte or a truncated download is
caught before the model is loaded. Every file a loader may read must be listed, inside the
directory. Hashing a 10 MB file costs ~20 ms: each process hashes a file once.

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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    for rel in _payload_files(directory):
        file = directory / rel
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


def verify(directory: Path, name: str, repair_hint: str, *, rehash: bool = False) -> Checkpoint:
    """Check every file against the manifest; raise CheckpointError naming the first bad one.

    A file's digest is trusted without hashing only if this process hashed the very same
    file (``_HASHED``, which ``hash_ahead`` may have filled); ``rehash`` (``prompt-models
    verify``) hashes everything regardless. A digest cache on disk keyed on size and mtime let
    bit rot pass forever, so there is none.
    """
    ahead = _AHEAD.get(directory.resolve())
    if ahead is not None:
        ahead.join()
    manifest = read_manifest(directory)
    root = directory.resolve()
    files = manifest["files"]
    if not files:
        raise CheckpointError(
            f"{directory / MANIFEST}: lists no files, so it protects nothing; {repair_hint}"
        )
    unlisted = sorted(set(_payload_files(directory)) - set(files))
    if unlisted:
        raise CheckpointError(
            f"{directory / unlisted[0]}: not in the manifest of checkpoint {name!r}, so it "
            f"cannot be verified; {repair_hint}"
        )
    for rel, entry in files.items():
        file = _inside(root, directory, rel, name)
        if not isinstance(entry, dict) or not file.is_file():
            raise CheckpointError(f"{file}: missing from checkpoint {name!r}; {repair_hint}")
        stat = file.stat()
        if stat.st_size != entry.get("size"):
            raise CheckpointError(
                f"{file}: size {stat.st_size} bytes, manifest says {entry.get('size')}; "
                f"checkpoint {name!r} is partial or corrupt; {repair_hint}"
            )
        key = _identity(file, stat)
        if rehash or _HASHED.get(key) != entry.get("sha256"):
            _HASHED[key] = sha256_file(file)
            if _HASHED[key] != entry.get("sha256"):
                raise CheckpointError(
                    f"{file}: sha256 does not match the manifest; checkpoint {name!r} is "
                    f"corrupt; {repair_hint}"
                )
    return Checkpoint(name=name, path=directory, manifest=manifest)


def hash_ahead(directory: Path) -> None:
    """Hash the files ``directory``'s manifest lists on a thread, for a ``verify`` to come: it
    waits for that thread instead of hashing them again, then checks them as always. hashlib
    and file reads release the GIL, so the hashing runs beside the caller's Python work.
    Problems are left for ``verify`` to report."""

    def run() -> None:
        try:
            root = directory.resolve()
            for rel in read_manifest(directory)["files"]:
                file = _inside(root, directory, rel, directory.name)
                key = _identity(file, file.stat())  # before reading: a rewrite changes it
                if key not in _HASHED:
                    _HASHED[key] = sha256_file(file)
        except (CheckpointError, OSError, TypeError):
            return

    thread = threading.Thread(target=run, name=f"hash {directory.name}", daemon=True)
    _AHEAD[directory.resolve()] = thread
    thread.start()


# Files this process has hashed: (path, device, inode, size, mtime, ctime) -> sha256.
_HASHED: dict[tuple[Any, ...], str] = {}
# Directories being hashed by ``hash_ahead`` (their threads).
_AHEAD: dict[Path, threading.Thread] = {}


def _identity(file: Path, stat: os.stat_result) -> tuple[Any, ...]:
    """Any rewrite or replacement changes one of these (ctime cannot be set back)."""
    return (
        str(file.resolve()),
        stat.st_dev,
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
    )


def _payload_files(directory: Path) -> list[str]:
    """Files a loader may read: all but the manifest and hidden files (temporaries, caches)."""
    found = []
    for file in directory.rglob("*"):
        rel = file.relative_to(directory)
        hidden = any(part.startswith(".") for part in rel.parts)
        if file.is_file() and rel.as_posix() != MANIFEST and not hidden:
            found.append(rel.as_posix())
    return sorted(found)


def _inside(root: Path, directory: Path, rel: Any, name: str) -> Path:
    """``directory / rel`` if it stays inside the checkpoint; a manifest naming an absolute
    path, ``..`` or a link out of the directory is refused, never read."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        raise CheckpointError(f"checkpoint {name!r}: manifest names an invalid path {rel!r}")
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts or path.drive:
        raise CheckpointError(
            f"checkpoint {name!r}: manifest path {rel!r} leaves the model directory; refused"
        )
    file = directory / path
    if not file.resolve().is_relative_to(root):
        raise CheckpointError(
            f"checkpoint {name!r}: {file} links outside the model directory; refused"
        )
    return file


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
