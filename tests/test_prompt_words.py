"""The project's units of a word, each defined once in prompt_words."""

from __future__ import annotations

import pytest

from prompt_words import (
    count_words,
    ghost_word,
    is_word_part,
    study_partial,
    study_tokens,
    typed_word,
    whitespace_words,
    word_span,
)


def test_the_units_differ_on_purpose() -> None:
    text = "(Cat:1.2), sci-fi"
    assert count_words(text) == 4  # editing words: "Cat", "1", "2", "sci-fi"
    assert whitespace_words(text) == ["(Cat:1.2),", "sci-fi"]
    assert study_tokens(text) == ["(", "cat", ":", "1.2", ")", ",", "sci-fi"]
    assert ghost_word(text) == "(Cat:1.2),"
    assert typed_word(text) == "sci-fi"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sci-f", (0, 5)),  # a hyphen between letters joins
        ("artist's", (0, 8)),
        ("8k", (0, 2)),
        ("cafe\u0301", (0, 5)),  # a combining mark stays in the word
        ("a --", (4, 4)),  # dashes after a space are not a word
        ("猫", (0, 1)),
        ("🐱", (1, 1)),  # an emoji is not a word character
    ],
)
def test_word_span(text: str, expected: tuple[int, int]) -> None:
    assert word_span(text, len(text)) == expected


def test_editing_words_join_at_hyphens_and_apostrophes_only() -> None:
    assert count_words("sci-fi artist's portrait") == 3
    assert count_words("a, b; 8k") == 3
    assert count_words("-- ,") == 0
    assert is_word_part("sci-") and is_word_part("cafe\u0301")
    assert not is_word_part("a b") and not is_word_part("a,")


def test_whitespace_words_keep_punctuation_attached() -> None:
    assert whitespace_words("a cat, highly detailed") == ["a", "cat,", "highly", "detailed"]
    assert whitespace_words(" a\tb\n") == ["a", "b"]


def test_study_tokens_lowercase_and_split_punctuation_but_keep_inner_marks() -> None:
    assert study_tokens("Portrait of ((Masterpiece)), (cat:1.2), 8k, self-portrait, don't") == [
        "portrait", "of", "(", "(", "masterpiece", ")", ")", ",", "(", "cat", ":", "1.2",
        ")", ",", "8k", ",", "self-portrait", ",", "don't",
    ]  # fmt: skip
    assert study_tokens("It\u2019s 1.5x. End-") == ["it\u2019s", "1.5x", ".", "end", "-"]


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        ("a port", "port"),
        ("self-por", "self-por"),
        ("don\u2019", "don\u2019"),
        ("a ", ""),
        ("(", ""),
    ],
)
def test_the_study_token_being_typed(text: str, partial: str) -> None:
    assert study_partial(text) == partial


@pytest.mark.parametrize(
    ("ghost", "word"),
    [
        ("trait, highly detailed", "trait,"),
        (" highly detailed", " highly"),
        (", highly detailed", ","),
        ("8k", "8k"),
        ("   ", "   "),
    ],
)
def test_ghost_word(ghost: str, word: str) -> None:
    assert ghost_word(ghost) == word


def test_typed_word_stops_at_spaces_commas_and_brackets() -> None:
    assert typed_word("woman portra") == "portra"
    assert typed_word("woman, ") == ""
    assert typed_word("(masterpi") == "masterpi"
    assert typed_word("<lora:na") == "na"
