"""The study's masked LM behind the engine API: every answer is a fill-mask at the cursor.

The word under the cursor becomes a ``<mask>`` with the text on both sides as context, and the
model's fillers that start with what was typed are the word completions (the next word right
after a space). At the end of a prompt two more masks follow the one asked about, so the model
does not take the prompt to end there. Expansions write one token at a time the same way
(``expand_with_masked_lm``); a masked LM has no phrases to offer beyond the next word.
"""

from __future__ import annotations

import threading
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model_store.study.mlm import load_masked_lm
from server.engine.masks import MASK, MaskSpan
from server.engine.requests import check_stop
from server.engine.study.mlm_infill import expand_with_masked_lm, fill_mask
from server.engine.study.word_engine import WordEngine
from server.engine.types import EngineSettings

MAX_FILLERS = 30  # fill_mask's first-piece candidates: more cannot be ranked
MIN_CANDIDATES = 8


class MaskedLMEngine(WordEngine):
    """``CompletionEngine``'s API over a transformers masked LM and its tokenizer."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        settings: EngineSettings | None = None,
        threads: int | None = None,
    ) -> None:
        if tokenizer.mask_token is None:
            raise ValueError("this tokenizer has no mask token: not a masked LM")
        self.model = model.eval()
        self.tokenizer = tokenizer
        super().__init__(settings, threads)

    @classmethod
    def from_checkpoint(
        cls, path: Path, settings: EngineSettings | None = None, threads: int | None = None
    ) -> MaskedLMEngine:
        """A masked-LM directory (transformers files), verified by the store, loaded offline."""
        return cls(*load_masked_lm(Path(path)), settings=settings, threads=threads)

    @property
    def max_expansion_tokens(self) -> int:
        """Half the positions (RoBERTa reserves two), so the prompt keeps room too."""
        return (self.model.config.max_position_embeddings - 2) // 2

    def next_words(
        self, left: str, partial: str, right: str, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        if not partial and left and not left[-1].isspace():
            left += " "  # a new word: the mask must ask for a space-prefixed one
        text = left + MASK + (right if right.strip() else MASK * 2)
        return self._fill(text, k, prefix=partial, nth=left.count(MASK), stop=stop)

    def fillers(
        self, span: MaskSpan, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        text = span.left + MASK + span.right
        return self._fill(text, k, prefix="", nth=span.nth, stop=stop)

    def continuation(self, text: str, stop: threading.Event | None) -> str:
        del text, stop
        return ""

    def expansions(self, text: str, n: int, stop: threading.Event | None) -> list[str]:
        """Seeded samples, one seed per attempt, until ``n`` distinct ones (or 2n attempts)."""
        settings = self.settings
        found: list[str] = []
        for attempt in range(2 * n):
            check_stop(stop)
            written = expand_with_masked_lm(
                self.model,
                self.tokenizer,
                text,
                settings.max_expansion_tokens,
                temperature=settings.temperature,
                seed=settings.seed + attempt,
                stop=stop,
            )
            added = written[len(text.rstrip()) :]
            expansion = text + added.lstrip() if text[-1:].isspace() else text + added
            if expansion not in found:
                found.append(expansion)
            if len(found) == n:
                break
        return found

    def _fill(
        self, text: str, k: int, *, prefix: str, nth: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        check_stop(stop)
        count = min(k, MAX_FILLERS)
        return fill_mask(
            self.model,
            self.tokenizer,
            text,
            count,
            # each candidate costs a row in every extension step: ghost text needs few
            candidates=min(MAX_FILLERS, max(3 * count, MIN_CANDIDATES)),
            prefix=prefix,
            nth=nth,
            stop=stop,
        )
