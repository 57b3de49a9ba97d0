"""The causal-LM engine plus ``<mask>`` fillers, for servers whose model is a causal LM.

A causal LM cannot read the text after a gap, so ``infill_with_causal_lm`` proposes short
candidates from the left side and ranks them by the probability of the whole line with each
in place. Everything else is ``CompletionEngine`` unchanged.
"""

from __future__ import annotations

import threading

from transformers import PreTrainedModel

from model_store.wordstats import KneserNeyTrigram
from server.engine.engine import CompletionEngine
from server.engine.filters import TermFilter
from server.engine.infill import infill_with_causal_lm
from server.engine.masks import check_limit, joined, mask_at
from server.engine.runner import Runner
from server.engine.types import EngineSettings, Suggestion


class InfillingEngine(CompletionEngine):
    """``CompletionEngine`` whose menu on a ``<mask>`` is the ranked gap fillers."""

    def __init__(
        self,
        model: PreTrainedModel | Runner,
        tokenizer: object,
        settings: EngineSettings | None = None,
        threads: int | None = None,
        word_stats: KneserNeyTrigram | None = None,
    ) -> None:
        """With a bare ``Runner`` (no transformers model to sample from) masks get nothing."""
        self._infill_lock = threading.Lock()
        super().__init__(
            model, tokenizer, settings=settings, threads=threads, word_stats=word_stats
        )
        self._infill_model = None if isinstance(model, Runner) else model
        self._infill_tokenizer = tokenizer

    def update_settings(self, settings: EngineSettings) -> None:
        super().update_settings(settings)  # validates; raises before anything changes
        with self._infill_lock:
            self._infill_settings = settings
            self._infill_terms = TermFilter(settings.blocklist, settings.safe_mode)

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]:
        """Fillers that replace a ``<mask>`` under the cursor; elsewhere the usual menu."""
        span = mask_at(text, cursor)
        if span is None:
            return super().complete(text, cursor, limit=limit, stop=stop)
        settings, terms = self._infill_settings, self._infill_terms
        limit = check_limit(limit, settings.max_items)
        if limit == 0 or self._infill_model is None:
            return []
        with self._infill_lock:
            fillers = infill_with_causal_lm(
                self._infill_model,
                self._infill_tokenizer,  # type: ignore[arg-type]
                span.left,
                span.right,
                limit,
                seed=settings.seed,
                stop=stop,
            )
        found: list[Suggestion] = []
        for filler, score in fillers:
            new_text = joined(span.left, filler)
            if new_text and terms.search(new_text) is None:
                found.append(Suggestion("fill", span.start, span.end, new_text, score))
        return found

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """No ghost text on a ``<mask>``: its fillers are in the menu."""
        if mask_at(text, cursor) is not None:
            return []
        return super().inline(text, cursor, explicit=explicit, stop=stop)
