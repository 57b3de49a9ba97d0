"""Expansion quality (short idea -> full prompts): pure metrics plus the training phrase set.

Metrics, per idea with its n candidates:
- idea kept: share of the idea's words (lower-cased, punctuation stripped) found in a candidate;
- distinct-2: distinct word bigrams / all word bigrams over the idea's candidates together;
- repeated phrase: the candidate repeats a comma-phrase or a word trigram;
- prompt-likeness: share of generated comma-phrases (lower-cased, stripped) that occur as a
  comma-phrase somewhere in the training corpus. "Generated" means every phrase of the
  candidate that ends after the idea (the phrase the idea runs into counts as a whole).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.data import SEED

_WORD = re.compile(r"[\w']+")
_IDEA_TRAILING = ",.;:!?"


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def comma_phrases(text: str) -> list[str]:
    return [p.strip().lower() for p in text.split(",") if p.strip()]


def ideas_from(lines: Sequence[str], count: int, seed: int = SEED) -> list[str]:
    """The first 2-4 words (seeded) of random dev prompts that have at least 5 words.

    Requiring 5 words keeps every idea a strict beginning of a longer prompt; repeated ideas
    (one person iterating on a prompt) are skipped.
    """
    rng = random.Random(seed)
    long_enough = [line for line in lines if len(line.split()) >= 5]
    rng.shuffle(long_enough)
    result: list[str] = []
    seen: set[str] = set()
    for line in long_enough:
        if len(result) == count:
            break
        idea = " ".join(line.split()[: rng.randint(2, 4)]).rstrip(_IDEA_TRAILING)
        if idea and idea not in seen:
            seen.add(idea)
            result.append(idea)
    return result


def idea_kept(idea: str, candidate: str) -> float:
    wanted = set(words(idea))
    if not wanted:
        return 1.0
    return len(wanted & set(words(candidate))) / len(wanted)


def distinct_2(candidates: Sequence[str]) -> float:
    bigrams = [
        tuple(w[i : i + 2]) for c in candidates for w in [words(c)] for i in range(len(w) - 1)
    ]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def has_repeated_phrase(candidate: str) -> bool:
    phrases = comma_phrases(candidate)
    if len(set(phrases)) < len(phrases):
        return True
    w = words(candidate)
    trigrams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
    return len(set(trigrams)) < len(trigrams)


def generated_phrases(idea: str, candidate: str) -> list[str]:
    """Comma-phrases of the candidate that end after the idea (all of them if it rewrote it)."""
    boundary = len(idea) if candidate.startswith(idea) else 0
    found = []
    position = 0
    for raw in candidate.split(","):
        end = position + len(raw)
        phrase = raw.strip().lower()
        if phrase and end > boundary:
            found.append(phrase)
        position = end + 1
    return found


def _phrase_hash(phrase: str) -> int:
    return int.from_bytes(hashlib.blake2b(phrase.encode("utf-8"), digest_size=8).digest(), "big")


class PhraseSet:
    """Membership of comma-phrases in the training corpus, as a sorted array of 64-bit hashes.

    A set of 15M Python strings would take gigabytes; 8-byte hashes take about 100 MB, and
    a false match is about one in 10^12.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = hashes

    @classmethod
    def build(cls, prompts: Iterable[str]) -> PhraseSet:
        values = np.fromiter(
            (_phrase_hash(p) for prompt in prompts for p in comma_phrases(prompt)), dtype=np.uint64
        )
        return cls(np.unique(values))

    @classmethod
    def cached(cls, prompts: Sequence[str], corpus_sha256: str, cache_root: Path) -> PhraseSet:
        path = cache_root / f"phrases-{corpus_sha256[:16]}.npy"
        if path.is_file():
            return cls(np.load(path))
        phrases = cls.build(prompts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, phrases.hashes)
        os.replace(tmp, path)
        return phrases

    def __contains__(self, phrase: str) -> bool:
        value = np.uint64(_phrase_hash(phrase))
        index = int(np.searchsorted(self.hashes, value))
        return index < len(self.hashes) and self.hashes[index] == value


@dataclass
class ExpansionScores:
    ideas: int
    candidates: int
    idea_kept: float
    distinct_2: float
    repeated_phrase: float
    prompt_likeness: float
    empty: float


def score(expansions: Sequence[tuple[str, Sequence[str]]], phrases: PhraseSet) -> ExpansionScores:
    """Aggregate the metrics over (idea, candidates) pairs; shares are over all candidates."""
    kept: list[float] = []
    distinct: list[float] = []
    repeated = 0
    empty = 0
    generated = 0
    known = 0
    for idea, candidates in expansions:
        distinct.append(distinct_2(candidates))
        for candidate in candidates:
            kept.append(idea_kept(idea, candidate))
            repeated += has_repeated_phrase(candidate)
            new = generated_phrases(idea, candidate)
            empty += candidate.strip() == idea.strip()
            generated += len(new)
            known += sum(phrase in phrases for phrase in new)
    total = len(kept)
    return ExpansionScores(
        ideas=len(expansions),
        candidates=total,
        idea_kept=sum(kept) / total if total else 0.0,
        distinct_2=sum(distinct) / len(distinct) if distinct else 0.0,
        repeated_phrase=repeated / total if total else 0.0,
        prompt_likeness=known / generated if generated else 0.0,
        empty=empty / total if total else 0.0,
    )
