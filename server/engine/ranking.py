"""Ordering suggestions: best first without duplicates, and the menu's words before phrases."""

from __future__ import annotations

from server.engine.filters import dedupe_key
from server.engine.syntax import CursorContext
from server.engine.types import Suggestion

WORDS_BEFORE_PHRASES = 4


def option_suggestions(where: CursorContext) -> list[Suggestion]:
    """Fixed choices (parameter names, aspect ratios, weights), most common first.

    They have no model score; a small decreasing one keeps their order when ranked.
    """
    return [
        Suggestion("word", where.option_start, where.cursor, option, -0.01 * order)
        for order, option in enumerate(where.options)
    ]


def rank(suggestions: list[Suggestion], keep_order: bool = False) -> list[Suggestion]:
    """Best first, without two suggestions that would produce the same text.

    Words are compared exactly: "fire" and "fire," are different words to type.
    """
    ordered = (
        suggestions if keep_order else sorted(suggestions, key=lambda s: s.score, reverse=True)
    )
    seen: set[tuple[int, str]] = set()
    result = []
    for suggestion in ordered:
        text = suggestion.new_text
        key = (suggestion.start, text if suggestion.kind == "word" else dedupe_key(text))
        if key not in seen:
            seen.add(key)
            result.append(suggestion)
    return result


def merge(words: list[Suggestion], phrases: list[Suggestion], limit: int) -> list[Suggestion]:
    """The menu: the best words first (what is being typed), then the best phrases, then the
    other words.

    A quarter of the menu is kept for phrases when there are any, after the first
    ``WORDS_BEFORE_PHRASES`` words: at the end of a menu of eight they came seventh and
    eighth, below where people look (the KSR's simulated person looks at five). Phrases that
    only repeat a word ("colors" after the word "colors") are left out first: one that took
    the phrase's place and was then dropped as a duplicate left a menu of five one short, so
    a client asking for five saw less than the first five of eight.
    """
    words = rank(words, keep_order=True)
    phrases = rank(words + phrases, keep_order=True)[len(words) :]  # what the words do not say
    reserved = min(len(phrases), max(1, limit // 4))
    chosen = words[: limit - reserved]
    kept = phrases[: limit - len(chosen)]
    return chosen[:WORDS_BEFORE_PHRASES] + kept + chosen[WORDS_BEFORE_PHRASES:]
