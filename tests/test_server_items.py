"""Suggestion -> CompletionItem / InlineCompletionItem mapping (pure, no server)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from server.documents import PromptContext, context_at
from server.engine import Suggestion
from server.items import completion_items, filter_text, inline_items, markdown_block


def context_for(source: str, character: int) -> PromptContext:
    doc = TextDocument(
        "file:///tmp/a.prompt",
        source,
        version=1,
        position_codec=PositionCodec(encoding=types.PositionEncodingKind.Utf16),
    )
    return context_at(doc, types.Position(line=0, character=character))


def apply(source: str, edit: types.TextEdit) -> str:
    """Apply a single-line edit the way a UTF-16 client does."""
    encoded = source.encode("utf-16-le")
    start, end = edit.range.start.character * 2, edit.range.end.character * 2
    return (encoded[:start] + edit.new_text.encode("utf-16-le") + encoded[end:]).decode("utf-16-le")


SOURCE = "🐱 woman portra"  # the emoji shifts UTF-16 columns by one
CURSOR_UNITS = 15


def test_items_edit_exactly_their_span() -> None:
    context = context_for(SOURCE, CURSOR_UNITS)
    suggestions = [
        Suggestion("word", 8, 14, "portrait", -0.5),
        Suggestion("phrase", 14, 14, ", highly detailed", -1.2),
    ]
    items = completion_items(suggestions, context, markdown=True, limit=8)
    assert [item.label for item in items] == ["portrait", ", highly detailed"]
    first, second = items
    assert first.text_edit.range == types.Range(
        start=types.Position(line=0, character=9), end=types.Position(line=0, character=15)
    )
    assert apply(SOURCE, first.text_edit) == "🐱 woman portrait"
    assert apply(SOURCE, second.text_edit) == "🐱 woman portra, highly detailed"
    assert first.filter_text.startswith("portra")
    assert second.filter_text == ", highly detailed"
    assert [item.sort_text for item in items] == ["0000", "0001"]
    assert first.detail == "word · score -0.50"
    assert first.documentation.kind == types.MarkupKind.Markdown
    assert "🐱 woman portrait" in first.documentation.value
    assert first.insert_text_format == types.InsertTextFormat.PlainText


def test_plaintext_documentation_when_the_client_has_no_markdown() -> None:
    context = context_for(SOURCE, CURSOR_UNITS)
    (item,) = completion_items(
        [Suggestion("word", 8, 14, "portrait", -0.5)], context, markdown=False, limit=8
    )
    assert item.documentation == "🐱 woman portrait"


def test_limit_and_rejected_suggestions() -> None:
    context = context_for(SOURCE, CURSOR_UNITS)
    suggestions = [
        Suggestion("word", 0, 3, "dog", -0.1),  # does not contain the cursor
        Suggestion("word", 8, 99, "portrait", -0.1),  # runs past the text
        Suggestion("word", 8, 14, "portra", -0.1),  # changes nothing
        Suggestion("phrase", 14, 14, "   ", -0.1),  # whitespace only
        Suggestion("word", 8, 14, "portrait", -0.2),
        Suggestion("phrase", 14, 14, "it", -0.3),  # same result as the previous one
        Suggestion("word", 8, 14, "portraits", -0.4),
        Suggestion("word", 8, 14, "portraiture", -0.5),
    ]
    items = completion_items(suggestions, context, markdown=True, limit=2)
    assert [item.label for item in items] == ["portrait", "portraits"]


def test_filter_text_always_starts_with_the_typed_text() -> None:
    assert filter_text("portra", "portrait") == "portrait"
    assert filter_text("Portra", "portrait") == "Portraportrait"
    assert filter_text("", ", detailed") == ", detailed"


def test_markdown_block_survives_backticks() -> None:
    block = markdown_block("a ```code``` prompt")
    fence = block.split("text\n", 1)[0]
    assert fence == "````"
    assert block.endswith("\n````")


def test_preview_marks_a_cut_window() -> None:
    doc = TextDocument("file:///tmp/a.prompt", "x" * 50 + " cat" + "y" * 50, version=1)
    context = context_at(doc, types.Position(line=0, character=54), before=10, after=5)
    (item,) = completion_items(
        [Suggestion("word", 7, 10, "cats", -1.0)], context, markdown=False, limit=8
    )
    assert item.documentation == "…xxxxxx cats" + "y" * 5 + "…"


def test_inline_items_replace_their_span() -> None:
    context = context_for(SOURCE, CURSOR_UNITS)
    suggestions = [
        Suggestion("word", 8, 14, "portrait of a queen", -0.5),
        Suggestion("expansion", 14, 14, "it, oil painting", -1.0),
    ]
    found = inline_items(suggestions, context, limit=1)
    assert len(found) == 1
    assert found[0].insert_text == "portrait of a queen"
    assert found[0].range == types.Range(
        start=types.Position(line=0, character=9), end=types.Position(line=0, character=15)
    )
    assert len(inline_items(suggestions, context, limit=5)) == 2
