"""Ghost text and menu items from prompt-ls, shaped for prompt-toolkit.

The server answers with edits (replace a span with new text). Ghost text can only append at the
cursor, so an edit that rewrites the word being typed becomes ghost text only when its new text
extends what is already typed. Menu items keep their span: ``start_position`` reaches back to
the edit's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field

from prompt_toolkit.auto_suggest import AutoSuggest, Suggestion
from prompt_toolkit.buffer import Buffer, CompletionState
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from client_tui.lsp import Edit, LspError, PromptServerClient
from prompt_words import typed_word


def ghost_from_edit(text: str, cursor: int, edit: Edit) -> str | None:
    """What an inline edit adds after the cursor, or None when it is not a pure extension."""
    if edit.start > cursor or edit.end < cursor:
        return None
    typed = text[edit.start : cursor]
    if not edit.new_text.startswith(typed):
        return None
    ghost = edit.new_text[len(typed) :]
    # Whatever the edit replaces after the cursor must already be the ghost's beginning.
    if not ghost.startswith(text[cursor : edit.end]):
        return None
    ghost = ghost[edit.end - cursor :]
    return ghost if ghost.strip() else None


def unique_ghosts(text: str, cursor: int, edits: Iterable[Edit]) -> list[str]:
    """Distinct ghost texts from edits, in the server's order."""
    ghosts: list[str] = []
    for edit in edits:
        ghost = ghost_from_edit(text, cursor, edit)
        if ghost is not None and ghost not in ghosts:
            ghosts.append(ghost)
    return ghosts


def completion_from_edit(document: Document, edit: Edit) -> Completion | None:
    """A menu entry for ``edit``, or None when it cannot apply at the cursor.

    A menu entry can only replace text before the cursor. An edit that reaches past it (a
    word or a ``<mask>`` with the cursor inside) applies only when its new text already ends
    with what follows the cursor; anything else would leave that text behind, doubled.
    """
    cursor = document.cursor_position
    if edit.start > cursor:
        return None
    new_text = edit.new_text
    following = document.text[cursor : edit.end]
    if following:
        if not new_text.endswith(following):
            return None
        new_text = new_text[: len(new_text) - len(following)]
    typed = document.text[edit.start : cursor]
    key = edit.filter_text or edit.new_text
    if not key.casefold().startswith(typed.casefold()) or new_text == typed:
        return None
    return Completion(
        new_text,
        start_position=edit.start - cursor,
        display=edit.label or edit.new_text,
        display_meta=edit.detail or None,
    )


def ghost_shown(buffer: Buffer) -> bool:
    """Ghost text is on screen: there is a suggestion and the cursor is at the end."""
    return bool(buffer.suggestion and buffer.suggestion.text) and (
        buffer.document.is_cursor_at_the_end
    )


def menu_item_selected(buffer: Buffer) -> bool:
    state = buffer.complete_state
    return state is not None and state.current_completion is not None


class LspAutoSuggest(AutoSuggest):
    """Ghost text from textDocument/inlineCompletion, debounced.

    Typing the ghost's own next characters keeps the rest of it without asking the server
    again (the way Tabby reuses a cached answer); anything else asks anew. Requests for text the
    user has since changed are cancelled by the client as soon as the text changes.
    """

    def __init__(self, lsp: PromptServerClient, debounce_s: float = 0.06) -> None:
        self._lsp = lsp
        self._debounce_s = debounce_s
        self._offered: tuple[str, str] | None = None  # (text, ghost) last put on screen

    def remember(self, text: str, ghost: str) -> None:
        """Record ghost text shown for ``text`` (also by the alternative-cycling keys)."""
        self._offered = (text, ghost)

    def forget(self) -> None:
        """The user moved away from the ghost: typing its characters must not revive it."""
        self._offered = None

    def _continue_offered(self, text: str) -> str | None:
        if self._offered is None:
            return None
        offered_text, ghost = self._offered
        full = offered_text + ghost
        if text.startswith(offered_text) and full.startswith(text) and len(text) < len(full):
            rest = full[len(text) :]
            self._offered = (text, rest)
            return rest
        return None

    def get_suggestion(self, buffer: Buffer, document: Document) -> Suggestion | None:
        """Synchronous path: only the continuation of ghost text already shown."""
        if not document.is_cursor_at_the_end:
            return None
        rest = self._continue_offered(document.text)
        return Suggestion(rest) if rest else None

    async def get_suggestion_async(self, buffer: Buffer, document: Document) -> Suggestion | None:
        if not document.is_cursor_at_the_end or not document.text.strip():
            return None
        if menu_item_selected(buffer):
            return None
        rest = self._continue_offered(document.text)
        if rest:
            return Suggestion(rest)
        await asyncio.sleep(self._debounce_s)
        if buffer.document != document:
            return None  # prompt-toolkit asks again for the new text
        try:
            edits = await self._lsp.inline(document.text, document.cursor_position)
        except LspError:
            return None
        ghosts = unique_ghosts(document.text, document.cursor_position, edits)
        if not ghosts:
            return None
        self.remember(document.text, ghosts[0])
        return Suggestion(ghosts[0])


@dataclass
class AlternativeCycler:
    """Alt-] / Alt-[: step through the server's alternatives (an Invoked inline request)."""

    lsp: PromptServerClient
    suggester: LspAutoSuggest
    text: str | None = None
    ghosts: list[str] = field(default_factory=list)
    index: int = 0

    def position(self, buffer: Buffer) -> tuple[int, int] | None:
        """(1-based index, count) while cycling on this buffer text, for the toolbar."""
        if self.text == buffer.text and self.ghosts and ghost_shown(buffer):
            return self.index + 1, len(self.ghosts)
        return None

    async def cycle(self, buffer: Buffer, step: int) -> bool:
        """Show the next (step=1) or previous (step=-1) alternative; False if there is none."""
        text, cursor = buffer.text, buffer.cursor_position
        if cursor != len(text) or not text.strip():
            return False
        current = buffer.suggestion.text if buffer.suggestion else None
        if self.text != text or not self.ghosts:
            edits = await self.lsp.inline(text, cursor, invoked=True)
            if buffer.text != text or buffer.cursor_position != cursor:
                return False
            ghosts = unique_ghosts(text, cursor, edits)
            if current and current not in ghosts:
                ghosts.insert(0, current)
            if not ghosts:
                return False
            self.text, self.ghosts = text, ghosts
            self.index = ghosts.index(current) if current in ghosts else (-1 if step > 0 else 0)
        self.index = (self.index + step) % len(self.ghosts)
        ghost = self.ghosts[self.index]
        buffer.suggestion = Suggestion(ghost)
        self.suggester.remember(text, ghost)
        return True


def expansion_completions(document: Document, expansions: list[str]) -> list[Completion]:
    """Menu entries that each replace the text before the cursor with a full expansion."""
    replaced = -len(document.text_before_cursor)
    count = len(expansions)
    return [
        Completion(text, start_position=replaced, display_meta=f"expansion {i}/{count}")
        for i, text in enumerate(expansions, start=1)
    ]


def show_menu(buffer: Buffer, document: Document, completions: list[Completion]) -> bool:
    """Open a menu of ``completions`` if the buffer still holds ``document``.

    Setting the state directly (rather than ``start_completion``) cannot be swallowed by a
    completion run already in flight; that run sees its state replaced and drops its items.
    """
    if buffer.document != document or not completions:
        return False
    buffer.suggestion = None  # the user chose the menu: Tab now walks it
    buffer.complete_state = CompletionState(original_document=document, completions=completions)
    buffer.on_completions_changed.fire()
    return True


class LspCompleter(Completer):
    """The completion menu from textDocument/completion.

    Rule for opening by itself: only while the cursor ends a word of at least ``min_word``
    characters, and then only with items that complete that word (next-phrase items wait for
    Ctrl-Space, which calls ``fetch(explicit=True)``).
    """

    def __init__(self, lsp: PromptServerClient, debounce_s: float = 0.06, min_word: int = 2):
        self._lsp = lsp
        self._debounce_s = debounce_s
        self._min_word = min_word

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        """Synchronous path (unused by the REPL's async prompt): never blocks on the server."""
        return []

    async def fetch(self, document: Document, *, explicit: bool) -> list[Completion]:
        """Menu entries for ``document``; empty when the server has none or is unavailable."""
        try:
            edits = await self._lsp.complete(document.text, document.cursor_position)
        except LspError:
            return []
        word_start = document.cursor_position - len(typed_word(document.text_before_cursor))
        completions = []
        for edit in edits:
            if not explicit and edit.start != word_start:
                continue
            completion = completion_from_edit(document, edit)
            if completion is not None:
                completions.append(completion)
        return completions

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        explicit = complete_event.completion_requested
        if not explicit:
            word = typed_word(document.text_before_cursor)
            if len(word) < self._min_word or document.current_char.isalnum():
                return
            await asyncio.sleep(self._debounce_s)
        for completion in await self.fetch(document, explicit=explicit):
            yield completion
