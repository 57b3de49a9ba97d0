"""Cursor positions in client code units <-> Python indices, through pygls' codecs."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from server.documents import context_at, document_lines

UTF8 = types.PositionEncodingKind.Utf8
UTF16 = types.PositionEncodingKind.Utf16
UTF32 = types.PositionEncodingKind.Utf32


def document(source: str, encoding: types.PositionEncodingKind = UTF16) -> TextDocument:
    return TextDocument(
        "file:///tmp/test.prompt",
        source,
        version=1,
        language_id="prompt",
        position_codec=PositionCodec(encoding=encoding),
    )


def units(text: str, encoding: types.PositionEncodingKind) -> int:
    """Independent of pygls: code units of ``text`` in ``encoding``."""
    if encoding == UTF8:
        return len(text.encode("utf-8"))
    if encoding == UTF16:
        return len(text.encode("utf-16-le")) // 2
    return len(text)


ODD_LINES = [
    "a cat 🐱 in space, ",  # astral plane emoji: 2 UTF-16 units, 4 UTF-8 bytes
    "東京の夜景, neon",  # CJK: 1 UTF-16 unit, 3 UTF-8 bytes
    "cafe\u0301 portrait",  # combining acute accent is a code point of its own
    "👩‍🚀 astronaut",  # ZWJ sequence of several code points
]


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
@pytest.mark.parametrize("line", ODD_LINES)
def test_every_code_point_boundary_round_trips(
    line: str, encoding: types.PositionEncodingKind
) -> None:
    doc = document(f"first line\n{line}\nlast", encoding)
    for index in range(len(line) + 1):
        position = types.Position(line=1, character=units(line[:index], encoding))
        context = context_at(doc, position)
        assert context.line == 1
        assert context.text[: context.cursor] == line[:index]
        assert context.position(context.cursor) == position


def test_column_after_an_emoji_counts_utf16_units() -> None:
    doc = document("🐱 cat")
    context = context_at(doc, types.Position(line=0, character=6))  # after "🐱 cat": 2 + 4
    assert context.cursor == 5
    assert context.range(2, 5) == types.Range(
        start=types.Position(line=0, character=3), end=types.Position(line=0, character=6)
    )


@pytest.mark.parametrize(
    ("source", "position", "line", "cursor_text"),
    [
        ("a cat", types.Position(line=0, character=99), 0, "a cat"),
        ("a cat\nsecond", types.Position(line=7, character=3), 1, "second"),
        ("a cat\n", types.Position(line=1, character=0), 1, ""),
        ("a cat\n", types.Position(line=5, character=5), 1, ""),
        ("", types.Position(line=3, character=3), 0, ""),
        ("x\r\ny", types.Position(line=0, character=9), 0, "x"),
    ],
)
def test_out_of_range_positions_are_clamped(
    source: str, position: types.Position, line: int, cursor_text: str
) -> None:
    context = context_at(document(source), position)
    assert context.line == line
    assert context.text[: context.cursor] == cursor_text


def test_trailing_line_break_opens_an_empty_last_line() -> None:
    assert document_lines(document("a\nb\n")) == ["a", "b", ""]
    assert document_lines(document("a\r\nb")) == ["a", "b"]
    assert document_lines(document("")) == [""]


def test_a_huge_line_is_cut_to_a_window_around_the_cursor() -> None:
    line = "word, " * 50_000
    doc = document(line)
    middle = len(line) // 2
    context = context_at(doc, types.Position(line=0, character=middle), before=100, after=20)
    assert context.cursor == 100
    assert len(context.text) == 120
    assert context.truncated_left and context.truncated_right
    assert context.text == line[middle - 100 : middle + 20]
    assert context.position(context.cursor) == types.Position(line=0, character=middle)


def test_lone_surrogates_are_replaced_without_moving_indices() -> None:
    doc = document("bad \ud83d half")
    context = context_at(doc, types.Position(line=0, character=6))
    assert context.text == "bad \ufffd half"
    assert context.cursor == 6


def test_a_column_inside_a_surrogate_pair_lands_on_a_code_point_boundary() -> None:
    context = context_at(document("🐱cat"), types.Position(line=0, character=1))
    assert context.cursor in (0, 1)
    assert context.position(context.cursor).character in (0, 2)
