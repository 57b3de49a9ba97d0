"""Commands a client may run with ``workspace/executeCommand``: names and argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EXPAND = "promptAutocomplete.expand"
TOKENS = "promptAutocomplete.tokens"
LEARN = "promptAutocomplete.learn"
DEFAULT_EXPANSIONS = 4
MAX_EXPANSIONS = 16
MAX_EXPAND_TEXT = 4000  # code points; longer prompts are refused, not silently cut
MAX_LEARN_TEXT = 16_000_000  # code points: tens of thousands of prompts in one call


class BadArguments(ValueError):
    """The arguments cannot be used; the message says what the command takes."""


def expand_arguments(arguments: Sequence[Any]) -> tuple[str, int]:
    """``[text]`` or ``[text, n]`` -> (text, n)."""
    usage = f"{EXPAND} takes [text] or [text, n] with 1 <= n <= {MAX_EXPANSIONS}"
    if not 1 <= len(arguments) <= 2:
        raise BadArguments(f"{usage}; got {len(arguments)} arguments")
    text = _text(arguments[0], usage)
    n = arguments[1] if len(arguments) == 2 else DEFAULT_EXPANSIONS
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EXPANSIONS:
        raise BadArguments(f"{usage}; got n={n!r}")
    return text, n


def tokens_arguments(arguments: Sequence[Any]) -> str:
    """``[text]`` -> text."""
    usage = f"{TOKENS} takes [text]"
    if len(arguments) != 1:
        raise BadArguments(f"{usage}; got {len(arguments)} arguments")
    return _text(arguments[0], usage)


def learn_arguments(arguments: Sequence[Any]) -> str:
    """``[text]``: one or more prompts, newline-separated -> text."""
    usage = f"{LEARN} takes [text]: prompts, one per line"
    if len(arguments) != 1:
        raise BadArguments(f"{usage}; got {len(arguments)} arguments")
    return _text(arguments[0], usage, MAX_LEARN_TEXT)


def _text(text: Any, usage: str, longest: int = MAX_EXPAND_TEXT) -> str:
    if not isinstance(text, str):
        raise BadArguments(f"{usage}; text must be a string, got {type(text).__name__}")
    if len(text) > longest:
        raise BadArguments(f"{usage}; text is longer than {longest} characters")
    return text
