"""The completion engine: text and cursor in, ranked suggestions out.

INTERFACE CONTRACT (bodies are being written by the engine work; signatures are fixed).
"""

from __future__ import annotations

import threading
from pathlib import Path

from server.engine.types import EngineSettings, Suggestion


class CompletionEngine:
    """Ranks word completions, next phrases and expansions from a causal LM."""

    def __init__(
        self, model, tokenizer, settings: EngineSettings | None = None, threads: int | None = None
    ) -> None:
        raise NotImplementedError

    @classmethod
    def from_checkpoint(
        cls, path: Path, settings: EngineSettings | None = None, threads: int | None = None
    ) -> CompletionEngine:
        raise NotImplementedError

    def update_settings(self, settings: EngineSettings) -> None:
        raise NotImplementedError

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]:
        """Menu items: current-word completions and next phrases, best first."""
        raise NotImplementedError

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """Ghost text: the best next phrase first; when explicit, alternatives and an expansion."""
        raise NotImplementedError

    def expand(self, text: str, n: int = 4, *, stop: threading.Event | None = None) -> list[str]:
        """n diverse full prompts that start with the user's text, best first."""
        raise NotImplementedError
