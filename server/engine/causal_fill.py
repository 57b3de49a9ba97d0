"""The causal-LM engine plus ``<mask>`` fillers, for servers whose model is a causal LM.

A causal LM cannot read the text after a gap, so ``infill_with_causal_lm`` proposes short
candidates from the left side and ranks them by the probability of the whole line with each
in place. Everything else is ``CompletionEngine`` unchanged.

The fillers run the checkpoint through transformers, which the rest of the engine does not
need; the model is loaded for them on the first ``<mask>`` (a few seconds, once), so a server
whose users never type one starts seconds sooner.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from model_store.personal import PersonalLayer
from model_store.wordstats import KneserNeyNgram
from server.engine.engine import CompletionEngine
from server.engine.filters import TermFilter
from server.engine.infill import infill_with_causal_lm
from server.engine.masks import check_limit, joined, mask_at
from server.engine.runner import Runner
from server.engine.types import EngineSettings, Suggestion

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class InfillingEngine(CompletionEngine):
    """``CompletionEngine`` whose menu on a ``<mask>`` is the ranked gap fillers."""

    def __init__(
        self,
        runner: Runner,
        tokenizer: Tokenizer,
        eos_id: int,
        settings: EngineSettings | None = None,
        threads: int | None = None,
        word_stats: KneserNeyNgram | None = None,
        source: Path | None = None,
        personal: PersonalLayer | None = None,
    ) -> None:
        """Masks are filled from ``source``, the checkpoint directory; without one (a scripted
        runner in tests) they get nothing."""
        self._infill_lock = threading.Lock()
        self._infill_model: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None
        super().__init__(
            runner,
            tokenizer,
            eos_id,
            settings=settings,
            threads=threads,
            word_stats=word_stats,
            source=source,
            personal=personal,
        )

    def _infill_pair(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The transformers model and tokenizer for fillers, loaded on first use."""
        if self._infill_model is None:
            assert self.source is not None
            from transformers import AutoModelForCausalLM, AutoTokenizer

            source = str(self.source)
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            self._infill_model = (model.eval(), tokenizer)
        return self._infill_model

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
        if limit == 0 or self.source is None:
            return []
        with self._infill_lock:
            model, tokenizer = self._infill_pair()
            fillers = infill_with_causal_lm(
                model, tokenizer, span.left, span.right, limit, seed=settings.seed, stop=stop
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
