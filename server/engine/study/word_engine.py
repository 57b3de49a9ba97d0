"""The engine API for models that predict whole words: the study's word LSTM and masked LM.

``CompletionEngine`` decodes a causal LM token by token; these models rank whole words
instead, so their adapters share the request handling here (cursor checks, ``<mask>`` spans,
syntax modes, spacing, blocklist, menu order) and implement four small hooks. Same public
API and types as ``CompletionEngine``: ``complete``, ``inline``, ``expand``,
``update_settings``; a set stop flag raises ``Cancelled``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import torch

from server.engine.filters import dedupe_key
from server.engine.masks import MaskSpan, joined, mask_at
from server.engine.ranking import option_suggestions
from server.engine.requests import (
    check_cursor,
    check_expand,
    check_limit,
    check_settings,
    check_stop,
    set_threads,
)
from server.engine.syntax import CursorContext, analyse
from server.engine.types import EngineSettings, Suggestion

INLINE_ALTERNATIVES = 3
PHRASE_SEPARATORS = ",;|"


class WordEngine(ABC):
    """Shared request handling; subclasses say how their model ranks and writes words."""

    def __init__(self, settings: EngineSettings | None = None, threads: int | None = None) -> None:
        """``threads``: torch's process-wide thread count (``requests.set_threads``)."""
        set_threads(threads)
        self._lock = threading.Lock()
        if settings is None:  # the defaults, with expansions no longer than this model writes
            limit = min(EngineSettings().max_expansion_tokens, self.max_expansion_tokens)
            settings = EngineSettings(max_expansion_tokens=limit)
        self.update_settings(settings)

    # Hooks -----------------------------------------------------------------------------

    @property
    @abstractmethod
    def max_expansion_tokens(self) -> int:
        """The longest expansion this model can write (its context window allows)."""

    @abstractmethod
    def next_words(
        self, left: str, partial: str, right: str, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        """Up to ``k`` words (with log P) that start with ``partial`` (case-insensitively)
        between ``left`` and ``right``, best first."""

    @abstractmethod
    def fillers(
        self, span: MaskSpan, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        """Up to ``k`` texts (with log P) for the ``<mask>`` at ``span``, best first."""

    @abstractmethod
    def continuation(self, text: str, stop: threading.Event | None) -> str:
        """The likeliest words after ``text`` up to the end of its phrase ("" if none)."""

    @abstractmethod
    def expansions(self, text: str, n: int, stop: threading.Event | None) -> list[str]:
        """Up to ``n`` full prompts that start with ``text``, best first."""

    # Public requests -------------------------------------------------------------------

    def update_settings(self, settings: EngineSettings) -> None:
        """Validate and apply settings; raise ValueError (and keep the old ones) if invalid."""
        terms = check_settings(settings, self.max_expansion_tokens)
        with self._lock:
            self._settings = settings
            self._terms = terms

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]:
        """Menu items: fillers on a ``<mask>``; else word completions, then next phrases."""
        cursor = check_cursor(text, cursor)
        limit = check_limit(limit, self._settings.max_items)
        with self._lock, torch.inference_mode():
            check_stop(stop)
            span = mask_at(text, cursor)
            if limit == 0:
                return []
            if span is not None:
                return self._fill_items(span, limit, stop)
            where = analyse(text, cursor)
            if where.mode == "none" or (where.inside_word and not where.in_word):
                return []  # right before a word: nothing to complete, no room for a phrase
            if where.mode == "options":
                return option_suggestions(where)[:limit]
            words = self._word_items(text, where, limit, stop)
            phrases: list[Suggestion] = []
            if not where.inside_word:
                for word in words[:2]:
                    check_stop(stop)
                    phrase = self._phrase(text, where, word, stop)
                    if phrase is not None:
                        phrases.append(phrase)
            reserved = min(len(phrases), max(1, limit // 4))
            return _unique([*words[: limit - reserved], *phrases])[:limit]

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """Ghost text at the cursor: the best word and its phrase; alternatives when explicit.

        Nothing in the middle of a word, on a ``<mask>`` (the menu has its fillers), inside
        tags or parameters.
        """
        cursor = check_cursor(text, cursor)
        with self._lock, torch.inference_mode():
            check_stop(stop)
            where = analyse(text, cursor)
            if mask_at(text, cursor) is not None or where.mode != "text" or where.inside_word:
                return []
            words = self._word_items(text, where, INLINE_ALTERNATIVES if explicit else 1, stop)
            found: list[Suggestion] = []
            for word in words:
                check_stop(stop)
                phrase = self._phrase(text, where, word, stop) or word
                ghost = phrase.new_text[cursor - phrase.start :]
                found.append(Suggestion(phrase.kind, cursor, cursor, ghost, phrase.score))
            if explicit and found:
                # finish the typed word as the best word does: sampling its rest misspells it
                start = (
                    text[where.segment_start : cursor]
                    + words[0].new_text[cursor - words[0].start :]
                )
                offset = cursor - where.segment_start
                for expansion in self.expansions(start, 1, stop):
                    if self._allowed(expansion[offset:]):  # no score: it goes last
                        found.append(
                            Suggestion("expansion", cursor, cursor, expansion[offset:], 0.0)
                        )
            return _unique([item for item in found if item.new_text.strip()])

    def expand(self, text: str, n: int = 4, *, stop: threading.Event | None = None) -> list[str]:
        """n distinct full prompts that start with the user's text, best first."""
        check_expand(text, n)
        with self._lock, torch.inference_mode():
            check_stop(stop)
            where = analyse(text, len(text))
            if n == 0 or where.mode != "text":
                return []
            line_start = where.segment_start
            found: list[str] = []
            seen: set[str] = set()
            for expansion in self.expansions(text[line_start:], n, stop):
                key = dedupe_key(expansion)
                continuation = expansion[len(text) - line_start :]
                if key in seen or not continuation.strip():
                    continue
                if self._terms.search(expansion, after=len(text) - line_start) is not None:
                    continue
                seen.add(key)
                found.append(text[:line_start] + expansion)
            return found[:n]

    # Helpers ---------------------------------------------------------------------------

    def _allowed(self, new_text: str) -> bool:
        return bool(new_text.strip()) and self._terms.search(new_text) is None

    def _fill_items(
        self, span: MaskSpan, limit: int, stop: threading.Event | None
    ) -> list[Suggestion]:
        items = [
            Suggestion("fill", span.start, span.end, filler, score)
            for filler, score in self.fillers(span, limit, stop)
            if self._allowed(filler)
        ]
        return _unique(items)[:limit]

    def _word_items(
        self, text: str, where: CursorContext, k: int, stop: threading.Event | None
    ) -> list[Suggestion]:
        """Words for the cursor: they replace the word under it, keeping what was typed."""
        left = text[where.segment_start : where.word_start]
        partial = text[where.word_start : where.cursor]
        right = text[where.word_end : where.segment_end]
        items = []
        for word, score in self.next_words(left, partial, right, k, stop):
            new_text = partial + word[len(partial) :] if partial else joined(left, word)
            if self._allowed(new_text) and new_text != text[where.word_start : where.word_end]:
                items.append(Suggestion("word", where.word_start, where.word_end, new_text, score))
        return items

    def _phrase(
        self, text: str, where: CursorContext, word: Suggestion, stop: threading.Event | None
    ) -> Suggestion | None:
        """``word`` followed by the model's likeliest words to the end of the phrase."""
        before = text[where.segment_start : word.start] + word.new_text
        more = self.continuation(before, stop)
        for separator in PHRASE_SEPARATORS:
            more = more.split(separator, 1)[0]
        more = joined(before, more).rstrip()
        if not more.strip() or not self._allowed(word.new_text + more):
            return None
        return Suggestion("phrase", word.start, word.end, word.new_text + more, word.score)


def _unique(suggestions: list[Suggestion]) -> list[Suggestion]:
    """Without later suggestions that would produce the same text."""
    seen: set[tuple[int, str]] = set()
    result = []
    for suggestion in suggestions:
        key = (suggestion.start, dedupe_key(suggestion.new_text))
        if key not in seen:
            seen.add(key)
            result.append(suggestion)
    return result
