"""Argument checks of promptAutocomplete.expand."""

from __future__ import annotations

import pytest

from server.commands import DEFAULT_EXPANSIONS, MAX_EXPANSIONS, BadArguments, expand_arguments


def test_text_alone_takes_the_default_count() -> None:
    assert expand_arguments(["a castle"]) == ("a castle", DEFAULT_EXPANSIONS)


def test_text_and_count() -> None:
    assert expand_arguments(["a castle", 2]) == ("a castle", 2)


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        [42],
        [None],
        ["a castle", 0],
        ["a castle", MAX_EXPANSIONS + 1],
        ["a castle", "3"],
        ["a castle", True],
        ["a castle", 2, "extra"],
        ["x" * 100_000],
    ],
)
def test_bad_arguments_say_what_the_command_takes(arguments: list[object]) -> None:
    with pytest.raises(BadArguments, match=r"takes \[text\] or \[text, n\]"):
        expand_arguments(arguments)
