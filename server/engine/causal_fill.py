"""The causal-LM engine plus ``<mask>`` fillers, for servers whose model is a causal LM.

A causal LM cannot read the text after a gap, so ``infill_with_causal_lm`` proposes short
candidates from the left side and ranks them by the probability of the whole line with each
in place. Everything else is ``CompletionEngine`` unchanged.

The fillers run the checkpoint through torch and transformers, which the rest of the engine
does not need; both are imported and the model loaded for them on the first ``<mask>`` (a few
seconds, once), so a server whose users never type one starts seconds sooner and holds
180 MB less.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from server.engine.engine import CompletionEngine
from server.engine.masks import joined, mask_at
from server.engine.requests import check_limit
from server.engine.types import Suggestion

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class InfillingEngine(CompletionEngine):
    """``CompletionEngine`` whose menu on a ``<mask>`` is the ranked gap fillers.

    Masks are filled from ``source``, the checkpoint directory; without one (a scripted
    runner in tests) they get nothing.
    """

    @functools.cached_property
    def _infill_pair(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The transformers model and tokenizer for fillers, loaded on first use."""
        assert self.source is not None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = str(self.source)
        model = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=True, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        return model.eval(), tokenizer

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
        limit = check_limit(limit, self._settings.max_items)
        if limit == 0 or self.source is None:
            return []
        with self._lock:
            settings, terms = self._settings, self._terms
            model, tokenizer = self._infill_pair
            from server.engine.infill import infill_with_causal_lm  # imports torch

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
