"""What a word is: every definition of one in the project, in one place.

Plain string logic on the standard library alone, so that every layer may import it: the
engine (``server``), the statistics and the study's models (``model_store``) and the REPL
(``client_tui``), which otherwise reaches the server only over LSP (tests/test_layering.py).

Four units go by "word", and they differ on purpose; each is defined once, here:

- An **editing word** (``is_word_char``, ``WORD_JOINERS``, ``is_word_part``, ``word_span``,
  ``count_words``): letters, digits, underscore and combining marks, with a hyphen or an
  apostrophe between them ("sci-fi", "artist's"; "cafe" + U+0301 stays one word). The engine
  completes the editing word at the cursor, cuts phrases after one and scores per word (a word
  spelled by several tokens must not lose to one spelled by one).
- A **whitespace word** (``whitespace_words``): a run between spaces, punctuation attached
  ("portrait," is not "portrait"). The n-gram statistics count these (an attached comma
  measured better: see model_store/ngram/model.py), and every perplexity "per word" divides
  by them, so that all systems are measured in the same unit whatever their tokens.
- A **study token** (``study_tokens``, ``study_partial``): the word LSTM's unit, chosen for
  next-word prediction (see model_store/study/lstm.py): lower-cased editing words that also
  keep curly apostrophes and decimal points ("1.2"), and every other punctuation character a
  token of its own, so that predicting "," is predicting where a phrase ends. Saved LSTM
  vocabularies are lists of these tokens: changing this unit would orphan them.
- The REPL's **ghost word** (``ghost_word``) and **typed word** (``typed_word``): what the
  terminal accepts with one keystroke and what it treats as typed. They follow the prompt's
  phrases rather than letters: accepting one word of "trait, highly" takes "trait," with its
  comma, and the typed word runs back to a space, a comma or markup (``( ) [ ] { } :``),
  keeping any other punctuation ("3.5", "<lora").
"""

from __future__ import annotations

import re
import unicodedata

# Characters that join word parts ("sci-fi", "artist's") without ending the word.
WORD_JOINERS = "-'"
# The study's tokens also keep curly apostrophes and decimal points inside a word.
STUDY_JOINERS = WORD_JOINERS + "\u2019."


def _joined_words(joiners: str) -> str:
    """A regex for runs of ``\\w`` characters, each joiner between two of them."""
    return rf"\w+(?:[{re.escape(joiners)}]\w+)*"


_WORDS = re.compile(_joined_words(WORD_JOINERS))
_STUDY_TOKEN = re.compile(_joined_words(STUDY_JOINERS) + r"|[^\w\s]")
_STUDY_PARTIAL = re.compile(rf"\w[\w{re.escape(STUDY_JOINERS)}]*$")
# Leading spaces, then a run up to the next space or comma keeping that comma, or a lone comma.
_GHOST_WORD = re.compile(r"\s*(?:[^\s,]+,?|,)")
_TYPED_WORD = re.compile(r"[^\s,()\[\]{}:]+$")


def is_word_char(char: str) -> bool:
    """Letters, digits, underscore and combining marks ("cafe" + U+0301 stays one word)."""
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def is_word_part(text: str) -> bool:
    """Whether ``text`` has only word characters and joiners: it can sit inside a word."""
    return all(is_word_char(char) or char in WORD_JOINERS for char in text)


def count_words(text: str) -> int:
    """Editing words in ``text``: "sci-fi" and "artist's" are one word each."""
    return len(_WORDS.findall(text))


def _is_joiner_at(text: str, index: int) -> bool:
    """A hyphen or apostrophe between word characters ("sci-fi", "artist's") is part of a word."""
    return (
        text[index] in WORD_JOINERS
        and index > 0
        and is_word_char(text[index - 1])
        and index + 1 < len(text)
        and is_word_char(text[index + 1])
    )


def word_span(text: str, cursor: int, lower_bound: int = 0) -> tuple[int, int]:
    """Start and end of the editing word touching ``cursor``; (cursor, cursor) when none."""
    start = cursor
    while start > lower_bound and (is_word_char(text[start - 1]) or _is_joiner_at(text, start - 1)):
        start -= 1
    end = cursor
    while end < len(text) and (is_word_char(text[end]) or _is_joiner_at(text, end)):
        end += 1
    return start, end


def whitespace_words(text: str) -> list[str]:
    """Whitespace-separated words, punctuation attached: the statistics' tokens."""
    return text.split()


def study_tokens(text: str) -> list[str]:
    """The word LSTM's tokens: lower-cased words and single punctuation characters."""
    return _STUDY_TOKEN.findall(text.lower())


def study_partial(text_before_cursor: str) -> str:
    """The study token being typed at the end of ``text_before_cursor`` ("" when none)."""
    match = _STUDY_PARTIAL.search(text_before_cursor)
    return match.group(0) if match else ""


def ghost_word(ghost: str) -> str:
    """The part of ghost text that accepting one word takes ("trait, highly" -> "trait,")."""
    match = _GHOST_WORD.match(ghost)
    return match.group(0) if match else ghost


def typed_word(text_before_cursor: str) -> str:
    """The REPL's partial word just before the cursor ("" right after a space or comma)."""
    match = _TYPED_WORD.search(text_before_cursor)
    return match.group(0) if match else ""
