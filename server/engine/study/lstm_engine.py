"""The study's word LSTM behind the engine API: words by next-word probability, greedy phrases.

The LSTM reads words, not subword tokens: a word being typed is completed by the vocabulary
words that start with it, ranked by the LSTM's probability of each as the next word; phrases
are its greedy continuation (the study's ``generate_text``); expansions are top-k samples.
It reads only the text before the cursor, so a ``<mask>`` is filled from its left side alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

from model_store.study.lstm import WordLSTMPredictor
from server.engine.masks import MaskSpan, joined
from server.engine.requests import check_stop
from server.engine.study.word_engine import WordEngine
from server.engine.types import EngineSettings

PHRASE_WORDS = 6  # greedy words after the first, enough for "in the style of greg rutkowski"
MAX_EXPANSION_WORDS = 200


class WordLSTMEngine(WordEngine):
    """``CompletionEngine``'s API over a ``WordLSTMPredictor``."""

    def __init__(
        self,
        predictor: WordLSTMPredictor,
        settings: EngineSettings | None = None,
        threads: int | None = None,
    ) -> None:
        self.predictor = predictor
        super().__init__(settings, threads)

    @classmethod
    def from_checkpoint(
        cls, path: Path, settings: EngineSettings | None = None, threads: int | None = None
    ) -> WordLSTMEngine:
        """A word-LSTM directory (weights, vocab.json, config.json), verified by the store."""
        return cls(WordLSTMPredictor.from_checkpoint(Path(path)), settings, threads)

    @property
    def max_expansion_tokens(self) -> int:
        return MAX_EXPANSION_WORDS

    def next_words(
        self, left: str, partial: str, right: str, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        del right  # a left-to-right model cannot use it
        check_stop(stop)
        return self.predictor.rank_words(left, partial, k)

    def fillers(
        self, span: MaskSpan, k: int, stop: threading.Event | None
    ) -> list[tuple[str, float]]:
        return [
            (joined(span.left, word), score)
            for word, score in self.next_words(span.left, "", "", k, stop)
        ]

    def continuation(self, text: str, stop: threading.Event | None) -> str:
        check_stop(stop)
        return self.predictor.next_words(text, PHRASE_WORDS)

    def expansions(self, text: str, n: int, stop: threading.Event | None) -> list[str]:
        check_stop(stop)
        settings = self.settings
        return self.predictor.expand(
            text,
            n,
            max_words=settings.max_expansion_tokens,
            temperature=settings.temperature,
            seed=settings.seed,
        )
