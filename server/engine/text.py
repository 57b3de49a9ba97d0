"""Trimming decoded text into suggestions: unfinished words, dangling function words, spaces.

Pure string logic beside ``filters.py``: the filters decide whether a candidate is offered,
these decide where it ends.
"""

from __future__ import annotations

from prompt_words import is_word_char, is_word_part

# fmt: off
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "of", "with", "and", "in", "on", "at", "by", "for", "to", "from", "as",
    "or", "into", "its", "his", "her", "their", "is", "are",
})
# fmt: on


def first_word_end(text: str, start: int) -> int:
    """Where the word that ``text[start:]`` begins (or continues) ends."""
    end = start
    while end < len(text) and is_word_part(text[end]):
        end += 1
    return end


def drop_unfinished_word(generated: str, partial: str) -> str:
    """A phrase cut by a limit: drop its last word, which may be cut in half.

    The word the user is typing is kept: the row finished it before going on.
    """
    if generated != generated.rstrip():
        return generated.rstrip()
    text = partial + generated
    keep = first_word_end(text, len(partial)) if partial else 0
    cut = len(text)
    while cut > keep and is_word_part(text[cut - 1]):
        cut -= 1
    return text[len(partial) : max(cut, len(partial))].rstrip()


def drop_trailing_function_words(generated: str, partial: str) -> str:
    """ "portrait of a" -> "portrait": a phrase should not end on "of", "a", "with"..."""
    text = partial + generated
    keep = first_word_end(text, len(partial)) if partial else 0
    while True:
        stripped = text.rstrip(" \t,;")
        start = len(stripped)
        while start > 0 and is_word_char(stripped[start - 1]):
            start -= 1
        if start < keep or start == len(stripped) or stripped[start:].lower() not in FUNCTION_WORDS:
            break
        text = stripped[:start]
    return text[len(partial) :].rstrip() if len(text) >= len(partial) else ""


def whole_phrases(generated: str) -> str:
    """An expansion cut by its token limit, up to its last complete phrase."""
    cut = max(generated.rfind(separator) for separator in ",;|")
    return generated[:cut] if cut > 0 else drop_unfinished_word(generated, "")


def starts_fresh(before: str) -> bool:
    """At the start of a prompt or after a space, a suggestion must not begin with a space."""
    return not before or before[-1].isspace()


def end_of_line(generated: str) -> int | None:
    index = generated.find("\n")
    return None if index == -1 else index
