"""Commands a client may run with ``workspace/executeCommand``: names and argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EXPAND = "promptAutocomplete.expand"
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
    text = arguments[0]
    if not isinstance(text, str):
        raise BadArguments(f"{usage}; text must be a string, got {type(text).__name__}")
    if len(text) > MAX_EXPAND_TEXT:
        raise BadArguments(f"{usage}; text is longer than {MAX_EXPAND_TEXT} characters")
    n = arguments[1] if len(arguments) == 2 else DEFAULT_EXPANSIONS
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EXPANSIONS:
        raise BadArguments(f"{usage}; got n={n!r}")
    return text, n


def learn_arguments(arguments: Sequence[Any]) -> str:
    """``[text]``: one or more prompts, newline-separated -> text."""
    usage = f"{LEARN} takes [text]: prompts, one per line"
    if len(arguments) != 1 or not isinstance(arguments[0], str):
        raise BadArguments(f"{usage}; got {[type(a).__name__ for a in arguments]}")
    if len(arguments[0]) > MAX_LEARN_TEXT:
        raise BadArguments(f"{usage}; text is longer than {MAX_LEARN_TEXT} characters")
    return arguments[0]
