"""Pure pieces of the REPL client: positions, edits to ghost text and menu items, options."""

from __future__ import annotations

import base64

import pytest
from lsprotocol import types
from prompt_toolkit.document import Document

from client_tui.app import osc52
from client_tui.cli import build_parser, settings_from_args
from client_tui.lsp import Edit, Progress
from client_tui.suggest import (
    completion_from_edit,
    expansion_completions,
    ghost_from_edit,
    unique_ghosts,
)
from client_tui.textpos import changed_span, index_to_position, position_to_index


@pytest.mark.parametrize(
    ("text", "index", "line", "character"),
    [
        ("woman", 3, 0, 3),
        ("🙂 cat", 1, 0, 2),  # the emoji is a surrogate pair in UTF-16
        ("🙂 cat", 3, 0, 4),
        ("a\n🙂b", 4, 1, 3),
        ("abc", 99, 0, 3),  # clamped to the end
    ],
)
def test_index_and_position_round_trip(text: str, index: int, line: int, character: int) -> None:
    position = index_to_position(text, index)
    assert (position.line, position.character) == (line, character)
    assert position_to_index(text, position) == min(index, len(text))


def test_positions_past_the_text_or_inside_a_pair_clamp() -> None:
    assert position_to_index("ab", types.Position(line=5, character=0)) == 2
    assert position_to_index("ab\ncd", types.Position(line=0, character=9)) == 2
    assert position_to_index("🙂x", types.Position(line=0, character=1)) == 0


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        ("woman", "woman ", (5, 5, " ")),
        ("woman portrait", "woman portrai", (13, 14, "")),
        ("a cat", "a dog", (2, 5, "dog")),
        ("aaa", "aa", (2, 3, "")),
        ("", "🙂", (0, 0, "🙂")),
        ("same", "same", (4, 4, "")),
    ],
)
def test_changed_span_is_the_smallest_edit(old: str, new: str, span: tuple[int, int, str]) -> None:
    assert changed_span(old, new) == span
    start, end, replacement = span
    assert old[:start] + replacement + old[end:] == new


def test_an_edit_that_extends_the_typed_word_becomes_ghost_text() -> None:
    text = "woman portra"
    assert ghost_from_edit(text, 12, Edit(6, 12, "portrait, detailed")) == "it, detailed"
    assert ghost_from_edit(text, 12, Edit(12, 12, "it")) == "it"


def test_edits_that_rewrite_typed_text_or_add_only_spaces_are_not_ghosts() -> None:
    text = "woman portra"
    assert ghost_from_edit(text, 12, Edit(6, 12, "Portrait")) is None  # rewrites "portra"
    assert ghost_from_edit(text, 12, Edit(12, 12, "  ")) is None
    assert ghost_from_edit(text, 12, Edit(13, 13, "x")) is None  # starts after the cursor


def test_unique_ghosts_keep_the_servers_order() -> None:
    edits = [Edit(5, 5, " a"), Edit(5, 5, " b"), Edit(0, 5, "woman a")]
    assert unique_ghosts("woman", 5, edits) == [" a", " b"]


def test_menu_items_reach_back_to_their_span_start() -> None:
    document = Document("woman portra", 12)
    completion = completion_from_edit(
        document, Edit(6, 12, "portrait", label="portrait", detail="word", filter_text="portrait")
    )
    assert completion is not None
    assert (completion.text, completion.start_position) == ("portrait", -6)
    assert completion.display_meta_text == "word"


def test_menu_items_that_do_not_match_the_typed_text_are_dropped() -> None:
    document = Document("woman portra", 12)
    assert completion_from_edit(document, Edit(6, 12, "castle", filter_text="castle")) is None
    assert completion_from_edit(document, Edit(6, 12, "portra", filter_text="portra")) is None


def test_menu_items_that_reach_past_the_cursor_keep_what_follows_it_once() -> None:
    inside_word = Document("woman portra, 8k", 9)  # "woman por|tra"
    assert completion_from_edit(inside_word, Edit(6, 12, "portrait", filter_text="x")) is None
    assert completion_from_edit(inside_word, Edit(6, 12, "portra", filter_text="portra")) is None
    boat = completion_from_edit(Document("a bat", 3), Edit(2, 5, "boat", filter_text="boat"))
    assert boat is not None and (boat.text, boat.start_position) == ("bo", -1)  # "a boat"
    on_mask = Document("a <mask> cat", 5)  # "a <ma|sk> cat": "sk>" would stay behind
    assert completion_from_edit(on_mask, Edit(2, 8, "red", filter_text="<mask>red")) is None
    after_mask = Document("a <mask> cat", 8)
    fill = completion_from_edit(
        after_mask, Edit(2, 8, "red", detail="fill · score -1.00", filter_text="<mask>red")
    )
    assert fill is not None
    assert (fill.text, fill.start_position) == ("red", -6)
    assert fill.display_meta_text == "fill · score -1.00"


def test_expansions_replace_everything_before_the_cursor() -> None:
    document = Document("woman portrait", 14)
    completions = expansion_completions(document, ["woman portrait, a", "woman portrait, b"])
    assert [c.start_position for c in completions] == [-14, -14]
    assert completions[1].display_meta_text == "expansion 2/2"


def test_settings_carry_only_what_the_user_set() -> None:
    args = build_parser().parse_args([])
    assert settings_from_args(args) == {"safeMode": True}
    args = build_parser().parse_args(
        [
            "--model",
            "small",
            "--max-items",
            "5",
            "--temperature",
            "0.7",
            "--max-expansion-tokens",
            "40",
            "--time-budget-ms",
            "900",
            "--blocklist",
            "gore, blood",
            "--blocklist",
            "/nud.*/",
            "--no-safe-mode",
        ]
    )
    assert settings_from_args(args) == {
        "safeMode": False,
        "model": "small",
        "maxItems": 5,
        "temperature": 0.7,
        "maxExpansionTokens": 40,
        "timeBudgetMs": 900,
        "blocklist": ["gore", "blood", "/nud.*/"],
    }


def test_folders_and_tag_flags_become_settings() -> None:
    args = build_parser().parse_args(
        [
            "--lora-dir",
            "/a",
            "--lora-dir",
            "/b",
            "--wildcard-dir",
            "/w",
            "--no-tags",
            "--token-limit",
            "150",
        ]
    )
    assert settings_from_args(args) == {
        "safeMode": True,
        "loraDirs": ["/a", "/b"],
        "wildcardDirs": ["/w"],
        "tagPacks": [],
        "tokenLimit": 150,
    }


def test_progress_reads_as_title_percentage_and_message() -> None:
    assert Progress("Prompt model default", "verifying", 40).describe() == (
        "Prompt model default 40% verifying"
    )
    assert Progress("Prompt model default", "loading", 0).describe() == (
        "Prompt model default loading"
    )


def test_osc52_carries_the_text_base64_encoded() -> None:
    sequence = osc52("woman portrait, 🙂")
    assert sequence.startswith("\x1b]52;c;") and sequence.endswith("\x07")
    assert base64.b64decode(sequence[7:-1]).decode("utf-8") == "woman portrait, 🙂"
