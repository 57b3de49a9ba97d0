"""Completion from the corpus statistics alone, while the language model loads.

Loading the model takes tenths of a second (seconds for a model that needs torch); the
statistics are numpy arrays mapped in milliseconds. This engine answers word completions and
ghost text from them (``blend.WordBlender`` without its LM) until the server switches to the
full engine, with the user's personal statistics as the full engine blends them. Expansions
need the LM: it offers none.
"""

from __future__ import annotations

import threading

from model_store.ngram.model import WordNgram
from model_store.personal import PersonalLayer
from server.engine.blend import WordBlender
from server.engine.filters import TermFilter
from server.engine.personal_words import PersonalWords
from server.engine.ranking import option_suggestions
from server.engine.requests import check_cursor, check_limit
from server.engine.syntax import analyse
from server.engine.types import Budget, EngineSettings, Suggestion


class StatisticsEngine:
    """The ``Engine`` calls, answered by the word statistics (numpy only, no torch)."""

    def __init__(
        self,
        stats: WordNgram,
        settings: EngineSettings | None = None,
        personal: PersonalLayer | None = None,
    ) -> None:
        mine = PersonalWords(personal, stats) if personal is not None else None
        self._blender = WordBlender(stats, personal=mine)
        self._lock = threading.Lock()
        self.update_settings(settings or EngineSettings())

    def update_settings(self, settings: EngineSettings) -> None:
        """Apply the settings this engine uses (the full engine checks the rest when it loads)."""
        if settings.max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {settings.max_items}")
        if settings.time_budget_ms <= 0:
            raise ValueError(f"time_budget_ms must be positive, got {settings.time_budget_ms}")
        terms = TermFilter(settings.blocklist, settings.safe_mode)
        with self._lock:
            self._settings = settings
            self._terms = terms
            self._blender.configure(settings, self._allowed)

    def _allowed(self, word: str) -> bool:
        return self._terms.search(word) is None

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]:
        """Menu words that finish the typed word (or follow it), as the full engine's are."""
        cursor = check_cursor(text, cursor)
        limit = check_limit(limit, self._settings.max_items)
        with self._lock:
            budget = Budget(self._settings.time_budget_ms, stop)
            budget.check()
            where = analyse(text, cursor)
            if limit == 0 or where.mode == "none":
                return []
            if where.mode == "options":
                return option_suggestions(where)[:limit]
            if not self._settings.corpus_statistics or where.inside_word:
                return []
            return self._blender.menu_items(text, where, budget)[:limit]

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """Ghost text: the likeliest next words (never in the middle of a word or a tag)."""
        cursor = check_cursor(text, cursor)
        with self._lock:
            budget = Budget(self._settings.time_budget_ms, stop)
            budget.check()
            where = analyse(text, cursor)
            if where.mode != "text" or where.inside_word or not self._settings.corpus_statistics:
                return []
            ghost = self._blender.ghost_item(text, where, budget)
            return [ghost] if ghost is not None else []

    def expand(self, text: str, n: int = 4, *, stop: threading.Event | None = None) -> list[str]:
        """None yet: expansions are the LM's."""
        return []
