"""The last ghost text, followed as the user types it instead of asking the model again."""

from __future__ import annotations

from dataclasses import dataclass

from server.engine.filters import has_content
from server.engine.types import Suggestion, SuggestionKind


@dataclass(frozen=True)
class _Ghost:
    """The last ghost text and where it was offered, to follow the user typing it."""

    before: str
    after: str
    kind: SuggestionKind
    text: str
    score: float


class GhostMemory:
    """Remembers the ghost text last offered and where."""

    def __init__(self) -> None:
        self._ghost: _Ghost | None = None

    def forget(self) -> None:
        self._ghost = None

    def remember(self, text: str, cursor: int, ghost: Suggestion | None) -> None:
        self._ghost = None
        if ghost is not None:
            self._ghost = _Ghost(
                text[:cursor], text[cursor:], ghost.kind, ghost.new_text, ghost.score
            )

    def typed_through(self, text: str, cursor: int) -> Suggestion | None:
        """The rest of the last ghost text when the user has typed its beginning (no decoding).

        Typing what the ghost text proposed is the commonest thing to do with it; its rest is
        still the greedy continuation, so asking the model again would only cost time.
        """
        ghost = self._ghost
        if ghost is None or text[cursor:] != ghost.after or not text.startswith(ghost.before):
            return None
        typed = text[len(ghost.before) : cursor]
        if len(ghost.before) > cursor or not ghost.text.startswith(typed):
            return None
        rest = ghost.text[len(typed) :]
        if not has_content(rest):
            return None
        return Suggestion(ghost.kind, cursor, cursor, rest, ghost.score)
