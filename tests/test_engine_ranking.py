"""The menu's order: words, phrases and fixed choices (server/engine/ranking.py)."""

from __future__ import annotations

from server.engine.ranking import merge
from server.engine.types import Suggestion, SuggestionKind


def items(kind: SuggestionKind, *texts: str) -> list[Suggestion]:
    return [Suggestion(kind, 0, 0, text, -rank) for rank, text in enumerate(texts)]


def test_phrases_come_after_the_first_four_words_where_people_look() -> None:
    words = items("word", "cat ", "car ", "castle ", "cave ", "cake ", "camel ", "cap ", "cow ")
    phrases = items("phrase", "cat on a mat", "castle in the sky")
    menu = [item.new_text for item in merge(words, phrases, 8)]
    assert menu == [
        "cat ", "car ", "castle ", "cave ", "cat on a mat", "castle in the sky", "cake ", "camel ",
    ]  # fmt: skip
    assert [item.new_text for item in merge(words, phrases, 5)][4] == "cat on a mat"


def test_a_phrase_that_repeats_a_word_does_not_cost_the_menu_an_item() -> None:
    words = items("word", "colors. ", "color ", "colors", "colours, ", "color, ", "colour ")
    phrases = items("phrase", "colors", "color scheme", "colours")
    five = [item.new_text for item in merge(words, phrases, 5)]
    eight = [item.new_text for item in merge(words, phrases, 8)]
    assert five == ["colors. ", "color ", "colors", "colours, ", "color scheme"]
    assert five == eight[:5] and len(eight) == 8


def test_without_enough_words_phrases_fill_the_menu() -> None:
    phrases = items("phrase", "a", "b", "c")
    assert [item.new_text for item in merge(items("word", "x "), phrases, 4)] == [
        "x ",
        "a",
        "b",
        "c",
    ]
    assert merge([], [], 8) == []
