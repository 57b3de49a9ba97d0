"""Where the evaluation data lives and which fixed, seeded subsets the benchmarks use."""

from __future__ import annotations

import os
import random
from pathlib import Path

from model_store.corpus import CORPUS_ENV, Corpus, load_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "prompts"
SEED = 1234
KSR_SAMPLE_SIZE = 300


class DataError(Exception):
    """The evaluation data is missing; the message says where it was looked for."""


def data_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The prompts directory: the argument, else $PROMPT_AUTOCOMPLETE_DATA, else ../shared/..."""
    location = Path(given or os.environ.get(CORPUS_ENV) or DEFAULT_DATA_DIR).expanduser()
    if location.is_file():
        location = location.parent
    if not (location / "dev.txt").is_file():
        raise DataError(f"{location}: no dev.txt here; pass --data DIR or set {CORPUS_ENV}")
    return location


def dev_lines(directory: Path) -> list[str]:
    """Non-empty lines of dev.txt exactly as written (the KSR targets are not cleaned)."""
    text = (directory / "dev.txt").read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line]


def ksr_sample(lines: list[str], size: int = KSR_SAMPLE_SIZE) -> list[str]:
    """The fixed 300-prompt sample; smaller sizes are its prefixes so quick runs are comparable."""
    if size > KSR_SAMPLE_SIZE:
        return random.Random(SEED).sample(lines, size)
    return random.Random(SEED).sample(lines, KSR_SAMPLE_SIZE)[:size]


def tuning_sample(lines: list[str], size: int) -> list[str]:
    """Dev prompts outside the KSR sample: parameters chosen on them are not fitted to it."""
    held_out = set(ksr_sample(lines))
    rest = [line for line in lines if line not in held_out]
    return random.Random(SEED + 1).sample(rest, min(size, len(rest)))


def training_corpus(directory: Path) -> Corpus:
    """The cleaned, de-duplicated training prompts (cleaning is cached by model_store)."""
    path = directory / "train.txt.gz"
    if not path.is_file():
        raise DataError(f"{path}: training corpus missing")
    return load_corpus(path)


def dev_corpus(directory: Path) -> Corpus:
    """Dev prompts cleaned the way the models' training data was (for perplexity)."""
    return load_corpus(directory / "dev.txt")
