"""Prompt corpus: loading from many formats, the study's cleaning, and leak-free splits.

Cleaning is done once per source file and cached (keyed by the file's sha256 and the cleaning
version), because reading and cleaning 1.9M prompts takes longer than training a tiny model.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from model_store import paths

CORPUS_ENV = "PROMPT_AUTOCOMPLETE_DATA"
CLEANING_VERSION = 1
TEXT_SUFFIXES = (".txt", ".txt.gz")
TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}

_WHITESPACE = re.compile(r"\s+")
# Spaced digits copied from other tools: "8 k", "3 d", "1 9 8 0 s", "3 5 mm" (see SOURCES.md).
_SPACED_DIGITS = re.compile(r"(?<![\w.])\d(?: \d)+(?![\w.])")
_DIGIT_UNIT = re.compile(r"(?<![\w.])(\d+) (k|K|d|D|s|mm|px|fps|th|nd|rd|st)(?!\w)")
# Discord bot flags that survived extraction: "-S 1234", "-n 4", "-W 512", "-C 7.5", "-A k_lms".
_BOT_FLAG = re.compile(r"(?:^|\s)-(?:[SnWHCs]\s*\d+(?:\.\d+)?|A\s*k_\w+)(?=\s|$)")


class CorpusError(Exception):
    """The corpus location is missing or unreadable; the message says what to do."""


def clean_prompt(text: str) -> str | None:
    """Return the prompt as the study cleaned it, or None when it should be dropped.

    Whitespace is folded, spaced-digit artefacts are re-joined ("8 k" -> "8k",
    "1 9 8 0 s" -> "1980s") and stray bot flags are removed. Weights such as ``((word))``,
    emoji and capitalisation are kept as typed: they are part of how people write prompts.
    """
    if not isinstance(text, str):
        return None
    text = _WHITESPACE.sub(" ", text).strip()
    text = _BOT_FLAG.sub("", text)
    text = _SPACED_DIGITS.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _DIGIT_UNIT.sub(r"\1\2", text)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) <= 1:
        return None
    return text


def clean_prompts(prompts: Iterable[object]) -> Iterator[str]:
    """Clean and exactly de-duplicate, keeping the first occurrence and the original order."""
    seen: set[str] = set()
    for raw in prompts:
        prompt = clean_prompt(raw)  # type: ignore[arg-type]
        if prompt is not None and prompt not in seen:
            seen.add(prompt)
            yield prompt


def family_key(prompt: str) -> str:
    """The first five lower-cased alphanumeric tokens: one person iterating on one idea."""
    return " ".join(re.findall(r"[a-z0-9]+", prompt.lower())[:5])


def family_bucket(prompt: str, salt: str = "") -> int:
    """Bucket 0-99 of the prompt's family; SOURCES.md's split uses salt ''."""
    digest = hashlib.sha1((salt + family_key(prompt)).encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % 100


def split_prompts(
    prompts: Iterable[str], valid_percent: int = 2, salt: str = "valid"
) -> tuple[list[str], list[str]]:
    """Split into (train, valid) so that prompts of one family never straddle the split."""
    train: list[str] = []
    valid: list[str] = []
    for prompt in prompts:
        (valid if family_bucket(prompt, salt) < valid_percent else train).append(prompt)
    return train, valid


def resolve_data(data: str | os.PathLike[str] | None) -> str:
    """The corpus location: the argument, else $PROMPT_AUTOCOMPLETE_DATA, else an error."""
    location = str(data) if data else os.environ.get(CORPUS_ENV)
    if not location:
        raise CorpusError(f"no corpus given: pass --data PATH or set {CORPUS_ENV}")
    return location


@dataclass(frozen=True)
class Corpus:
    """Cleaned prompts with the identity of their source, for manifests."""

    name: str
    sha256: str
    prompts: list[str]


def load_corpus(data: str | os.PathLike[str] | None, column: str = "prompt") -> Corpus:
    """Load and clean prompts from a file, a directory of files or a Hugging Face dataset id.

    Local files are cleaned once and cached under the user cache directory.
    """
    location = resolve_data(data)
    path = Path(location).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_prompt_file(p))
        if not files:
            raise CorpusError(f"{path}: no prompt files (.txt, .txt.gz, .csv, .jsonl, .parquet)")
        digests = [_file_sha256(f) for f in files]
        combined = hashlib.sha256("".join(digests).encode()).hexdigest()
        prompts = list(clean_prompts(p for f in files for p in _read_cached(f, column)))
        return Corpus(name=path.name, sha256=combined, prompts=prompts)
    if path.is_file():
        return Corpus(name=path.name, sha256=_file_sha256(path), prompts=_read_cached(path, column))
    if path.exists() or "/" not in location or location.startswith((".", "/", "~")):
        raise CorpusError(f"{location}: no such corpus file or directory")
    return _load_hub_dataset(location, column)


def _is_prompt_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(TEXT_SUFFIXES) or path.suffix.lower() in TABLE_SUFFIXES


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cached(path: Path, column: str) -> list[str]:
    """Cleaned prompts of one file, from the cache when its content was seen before."""
    digest = _file_sha256(path)
    cache = paths.cache_dir() / "corpus" / f"{digest[:32]}-c{CLEANING_VERSION}-{column}.txt.gz"
    if cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as handle:
            return handle.read().split("\n") if cache.stat().st_size > 20 else []
    prompts = list(clean_prompts(_read_raw(path, column)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as handle:
        handle.write("\n".join(prompts))
    os.replace(tmp, cache)
    return prompts


def _read_raw(path: Path, column: str) -> Iterator[object]:
    name = path.name.lower()
    if name.endswith(TEXT_SUFFIXES):
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    yield line.rstrip("\n")
        except (OSError, EOFError) as exc:
            raise CorpusError(f"{path}: cannot read ({exc})") from exc
        return
    fmt = TABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise CorpusError(f"{path}: unknown format (use .txt, .txt.gz, .csv, .jsonl or .parquet)")
    import datasets

    table = datasets.load_dataset(fmt, data_files=str(path), split="train")
    if column not in table.column_names:
        raise CorpusError(f"{path}: no column {column!r} (columns: {table.column_names})")
    yield from table[column]


def _load_hub_dataset(dataset_id: str, column: str) -> Corpus:
    """A Hugging Face dataset such as ``poloclub/diffusiondb`` (needs the network)."""
    import datasets

    try:
        table = datasets.load_dataset(dataset_id, split="train")
    except Exception as exc:
        raise CorpusError(
            f"{dataset_id}: cannot load this Hugging Face dataset ({exc}); "
            "offline, pass a local file or directory instead"
        ) from exc
    if column not in table.column_names:
        raise CorpusError(f"{dataset_id}: no column {column!r} (columns: {table.column_names})")
    fingerprint = getattr(table, "_fingerprint", dataset_id)
    prompts = list(clean_prompts(table[column]))
    return Corpus(name=dataset_id, sha256=str(fingerprint), prompts=prompts)
