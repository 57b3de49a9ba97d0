"""Quality filters for candidates: content, loops, repeats, duplicates, blocklist, safe mode.

Each filter is a small pure function so it can be tested alone; the engine applies them to
every kind of suggestion. Expansions are repaired (offending phrases removed, loops cut) rather
than dropped, because a long candidate is costly to regenerate.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from server.engine.safety import PATTERNS, SAFE_MODE_TERMS
from server.engine.syntax import SEPARATOR as _SEPARATOR
from server.engine.syntax import cut_unbalanced, normalize_phrase, split_phrases

if TYPE_CHECKING:  # the statistics serve, through the term filter, before the model loads
    from server.engine.vocab import Vocabulary

_WORD = re.compile(r"\w+")
_CHARACTER_LOOP = re.compile(r"(.{1,4}?)\1{5,}", re.DOTALL)
_NON_WORD = re.compile(r"[\W_]+")
# Words people do double on purpose ("very very detailed").
INTENSIFIERS = frozenset({"very", "super", "ultra", "hyper", "extremely", "really", "so", "much"})


def has_content(text: str) -> bool:
    """True when ``text`` has a letter, digit or pictograph, not just punctuation and spaces."""
    return any(
        unicodedata.category(char)[0] in "LN" or unicodedata.category(char) == "So" for char in text
    )


def loop_start(text: str) -> int | None:
    """Where ``text`` starts repeating itself, or None.

    A loop is a word twice in a row (intensifiers three times), a word trigram seen before,
    or a unit of up to four characters repeated six times ("!!!!!!", "((((((").
    """
    starts: list[int] = []
    character_loop = _CHARACTER_LOOP.search(text)
    if character_loop is not None:
        starts.append(character_loop.start() + len(character_loop.group(1)))
    words = [(match.group().casefold(), match.start()) for match in _WORD.finditer(text)]
    for index in range(1, len(words)):
        word = words[index][0]
        if word == words[index - 1][0] and word not in INTENSIFIERS and not word.isdigit():
            starts.append(words[index][1])
            break
    seen: set[tuple[str, str, str]] = set()
    for index in range(2, len(words)):
        first, second, third = words[index - 2][0], words[index - 1][0], words[index][0]
        if first == second == third:
            starts.append(words[index - 1][1])
            break
        trigram = (first, second, third)
        if trigram in seen:
            starts.append(words[index - 2][1])
            break
        seen.add(trigram)
    return min(starts) if starts else None


def has_loop(text: str) -> bool:
    return loop_start(text) is not None


def dedupe_key(text: str) -> str:
    """Candidates that differ only in case, spacing or punctuation share a key."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def unique(candidates: Iterable[str]) -> list[str]:
    """``candidates`` in order with later duplicates (by ``dedupe_key``) removed."""
    seen: set[str] = set()
    result = []
    for candidate in candidates:
        key = dedupe_key(candidate)
        if key not in seen:
            seen.add(key)
            result.append(candidate)
    return result


def known_phrases(segment: str, cursor: int | None = None) -> set[str]:
    """Normalised phrases of a prompt, leaving out the one at ``cursor`` (still being written)."""
    phrases = set()
    for start, end in split_phrases(segment):
        if cursor is not None and start <= cursor <= end:
            continue
        normalized = normalize_phrase(segment[start:end])
        if normalized:
            phrases.add(normalized)
    return phrases


def repeats_known(text: str, known: set[str]) -> bool:
    """True when any phrase of ``text`` is one the prompt already contains."""
    return any(normalize_phrase(text[start:end]) in known for start, end in split_phrases(text))


def parse_blocklist(entries: Iterable[str]) -> tuple[list[str], list[re.Pattern[str]]]:
    """Split entries into plain words and ``/regex/`` patterns; raise ValueError on bad ones."""
    words: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for raw in entries:
        if not isinstance(raw, str):
            raise ValueError(f"blocklist entries must be strings, got {raw!r}")
        entry = raw.strip()
        if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
            source = entry[1:-1]
            if not source:
                raise ValueError("blocklist entry '//' is an empty regular expression")
            try:
                patterns.append(re.compile(source, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"blocklist entry {raw!r} is not a valid regex: {exc}") from exc
        elif entry:
            words.append(entry)
    return words, patterns


class TermFilter:
    """The user's blocklist plus, in safe mode, the built-in sexual and hateful terms.

    Plain words match whole words, case-insensitively; ``/regex/`` entries match anywhere,
    case-insensitively. Matching tokens are also banned during decoding, so the model spends
    its few steps on acceptable text instead of producing candidates that are then dropped.
    """

    def __init__(self, blocklist: Iterable[str] = (), safe_mode: bool = True) -> None:
        words, patterns = parse_blocklist(blocklist)
        if safe_mode:
            words.extend(SAFE_MODE_TERMS)
            patterns.extend(re.compile(source, re.IGNORECASE) for source in PATTERNS)
        self.words = frozenset(unicodedata.normalize("NFC", word).casefold() for word in words)
        self.patterns = patterns
        self._words_regex = (
            re.compile(
                r"(?<!\w)(?:"
                + "|".join(re.escape(w) for w in sorted(self.words, key=len, reverse=True))
                + r")(?!\w)",
                re.IGNORECASE,
            )
            if self.words
            else None
        )

    def search(self, text: str, after: int = 0) -> re.Match[str] | None:
        """The first offending match that ends after index ``after`` (what the user typed)."""
        found: list[re.Match[str]] = []
        for regex in ([self._words_regex] if self._words_regex else []) + self.patterns:
            for match in regex.finditer(text):
                if match.end() > after and match.end() > match.start():
                    found.append(match)
                    break
        return min(found, key=lambda match: match.start()) if found else None

    def banned_tokens(self, vocab: Vocabulary) -> np.ndarray:
        """Boolean mask of tokens that are a blocked word on their own."""
        mask = np.zeros(vocab.size, dtype=bool)
        for term, ids in vocab.word_terms().items():
            if term in self.words or (
                len(term) >= 2 and any(pattern.fullmatch(term) for pattern in self.patterns)
            ):
                mask[ids] = True
        return mask


def clean_expansion(
    user_text: str, continuation: str, brackets: str, terms: TermFilter
) -> str | None:
    """Repair a sampled continuation of ``user_text``; None when nothing useful is left.

    Cuts unbalanced brackets and loops, and drops phrases that are empty, repeat the prompt
    or contain blocked terms (with their separator, so no ", ," is left behind). A blocked
    word that finishes the user's own last phrase drops the whole candidate, since it cannot
    be removed without touching what the user typed.
    """
    continuation = cut_unbalanced(continuation, brackets, allow_closing_outer=True)
    loop = loop_start(continuation)
    if loop is not None:
        continuation = continuation[: max(0, _last_separator(continuation, loop))]
    separators = list(_SEPARATOR.finditer(continuation))
    head = continuation[: separators[0].start()] if separators else continuation
    ends = [match.start() for match in separators[1:]] + [len(continuation)]
    pieces = [
        (match.group(), continuation[match.end() : end])
        for match, end in zip(separators, ends, strict=False)  # no separators: no pieces
    ]
    phrase_start = max((m.end() for m in _SEPARATOR.finditer(user_text)), default=0)
    current = user_text[phrase_start:]
    known = known_phrases(user_text, cursor=len(user_text))

    def acceptable(phrase: str) -> bool:
        normalized = normalize_phrase(phrase)
        return bool(normalized) and normalized not in known and terms.search(phrase) is None

    kept: list[str] = []
    lead = ""  # whitespace to reuse when the first new phrase is dropped
    if has_content(current):
        if terms.search(current + head, after=len(current)) is not None:
            return None
        kept.append(head)
        known.add(normalize_phrase(current + head))
    elif acceptable(head):
        kept.append(head)
        known.add(normalize_phrase(head))
    else:
        lead = head[: len(head) - len(head.lstrip())]
    for separator, phrase in pieces:
        if not acceptable(phrase):
            continue
        known.add(normalize_phrase(phrase))
        kept.append(separator + phrase if kept else lead + phrase.lstrip())
    result = cut_unbalanced("".join(kept), brackets, allow_closing_outer=True)
    result = result.rstrip(" ,;|\t\n")
    if not has_content(result) or has_loop(result):
        return None
    return result


def _last_separator(text: str, before: int) -> int:
    """Start of the last separator before index ``before``; 0 when there is none."""
    starts = [match.start() for match in _SEPARATOR.finditer(text, 0, before)]
    return starts[-1] if starts else 0
