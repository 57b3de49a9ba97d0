"""Engine suggestions to LSP items: a pure mapping, testable without a server or a model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lsprotocol import types

from server.documents import PromptContext
from server.engine.types import Suggestion

_ITEM_KINDS: dict[str, types.CompletionItemKind] = {
    "word": types.CompletionItemKind.Text,
    "tag": types.CompletionItemKind.Keyword,
    "fill": types.CompletionItemKind.Text,
    "phrase": types.CompletionItemKind.Value,
    "expansion": types.CompletionItemKind.Snippet,
}


def _usable(suggestions: Iterable[Suggestion], context: PromptContext) -> list[Suggestion]:
    """Suggestions whose span holds the cursor and that change something, without repeats.

    LSP clients reject an edit whose range does not contain the cursor, and two suggestions
    that produce the same line would show as duplicates.
    """
    seen: set[str] = set()
    usable: list[Suggestion] = []
    for suggestion in suggestions:
        if not 0 <= suggestion.start <= context.cursor <= suggestion.end <= len(context.text):
            continue
        if not suggestion.new_text.strip():
            continue
        if context.text[suggestion.start : suggestion.end] == suggestion.new_text:
            continue
        result = context.replaced(suggestion.start, suggestion.end, suggestion.new_text)
        if result in seen:
            continue
        seen.add(result)
        usable.append(suggestion)
    return usable


def filter_text(typed: str, new_text: str) -> str:
    """Clients filter items by what was typed in the span: make it a prefix, or they drop it."""
    return new_text if new_text.startswith(typed) else typed + new_text


def preview(context: PromptContext, suggestion: Suggestion) -> str:
    """The prompt as it will read once the suggestion is accepted (window only, elided)."""
    text = context.replaced(suggestion.start, suggestion.end, suggestion.new_text)
    left = "…" if context.truncated_left else ""
    right = "…" if context.truncated_right else ""
    return f"{left}{text}{right}"


def markdown_block(text: str) -> str:
    """A fenced block that no backtick run inside ``text`` can close early."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def completion_items(
    suggestions: Sequence[Suggestion],
    context: PromptContext,
    *,
    markdown: bool,
    limit: int,
) -> list[types.CompletionItem]:
    """Ranked menu items; each edit replaces exactly its suggestion's span."""
    items: list[types.CompletionItem] = []
    for rank, suggestion in enumerate(_usable(suggestions, context)[:limit]):
        typed = context.text[suggestion.start : suggestion.end]
        full = preview(context, suggestion)
        documentation = (
            types.MarkupContent(kind=types.MarkupKind.Markdown, value=markdown_block(full))
            if markdown
            else full
        )
        items.append(
            types.CompletionItem(
                label=suggestion.label or suggestion.new_text.strip(),
                kind=_ITEM_KINDS.get(suggestion.kind, types.CompletionItemKind.Text),
                detail=suggestion.detail or f"{suggestion.kind} · score {suggestion.score:.2f}",
                documentation=documentation,
                sort_text=f"{rank:04d}",
                filter_text=filter_text(typed, suggestion.new_text),
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(
                    range=context.range(suggestion.start, suggestion.end),
                    new_text=suggestion.new_text,
                ),
            )
        )
    return items


def inline_items(
    suggestions: Sequence[Suggestion], context: PromptContext, *, limit: int
) -> list[types.InlineCompletionItem]:
    """Ghost-text items, best first; each replaces its span with ``insert_text``."""
    return [
        types.InlineCompletionItem(
            insert_text=suggestion.new_text,
            range=context.range(suggestion.start, suggestion.end),
        )
        for suggestion in _usable(suggestions, context)[:limit]
    ]
