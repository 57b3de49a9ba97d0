"""The study's word LSTM behind the engine API: words by next-word probability, greedy phrases.

The LSTM reads words, not subword tokens: a word being typed is completed by the vocabulary
words that start with it, ranked by the LSTM's probability of each as the next word; phrases
are its greedy continuation (the study's ``generate_text``); expansions are top-k samples.
It reads only the text before the cursor, so a ``<mask>`` is filled from its left side alone.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from model_store.study.lstm import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Vocabulary,
    WordLSTM,
    WordLSTMConfig,
    context_window,
    detokenize,
    load_word_lstm,
)
from prompt_words import study_partial, study_tokens
from server.engine.masks import MaskSpan, joined
from server.engine.requests import check_stop
from server.engine.study.word_engine import WordEngine
from server.engine.types import EngineSettings

PHRASE_WORDS = 6  # greedy words after the first, enough for "in the style of greg rutkowski"
MAX_EXPANSION_WORDS = 200


class WordLSTMPredictor:
    """Completion with the word LSTM: typed-word completion, continuation and expansion."""

    def __init__(self, model: WordLSTM, vocab: Vocabulary, config: WordLSTMConfig):
        self.model = model.eval()
        self.vocab = vocab
        self.config = config
        # never proposed: padding, unknown words and a second prompt start
        self._banned = torch.tensor([PAD_ID, UNK_ID, BOS_ID])

    @classmethod
    def from_checkpoint(cls, path: Path) -> WordLSTMPredictor:
        return cls(*load_word_lstm(path))

    def _context_ids(self, text: str) -> list[int]:
        return [BOS_ID, *self.vocab.encode(study_tokens(text))]

    @torch.no_grad()
    def _logprobs(self, contexts: Sequence[Sequence[int]]) -> torch.Tensor:
        windows = torch.tensor([context_window(ids, self.config.context) for ids in contexts])
        return torch.log_softmax(self.model(windows).float(), dim=-1)

    def next_token_logprobs(self, text: str) -> torch.Tensor:
        """log P(next token | text) over the vocabulary."""
        return self._logprobs([self._context_ids(text)])[0]

    def complete_word(self, text_before_cursor: str, k: int = 8) -> list[tuple[str, float]]:
        """Up to ``k`` words that complete the word being typed, best first, with log P.

        With the cursor after a space, these are next-word predictions (punctuation left
        out). A candidate keeps what was typed as typed ("Portr" -> "Portrait").
        """
        partial = study_partial(text_before_cursor)
        context = text_before_cursor[: len(text_before_cursor) - len(partial)]
        return [
            (partial + word[len(partial) :], score)
            for word, score in self.rank_words(context, partial, k)
        ]

    def rank_words(self, context: str, partial: str, k: int) -> list[tuple[str, float]]:
        """Up to ``k`` vocabulary words after ``context`` that start with ``partial``, with log P.

        Words come as the vocabulary has them (lower-cased); punctuation is never offered.
        """
        candidates = self.vocab.with_prefix(partial.lower()) if partial else self.vocab.word_entries
        if not candidates or k < 1:
            return []
        logprobs = self.next_token_logprobs(context)
        ids = torch.tensor([index for _, index in candidates])
        top = torch.topk(logprobs[ids], min(k, len(ids)))
        return [
            (self.vocab.words[int(ids[i])], float(score))
            for score, i in zip(top.values, top.indices, strict=True)
        ]

    def next_words(self, text: str, n_words: int = 3) -> str:
        """The greedy continuation of ``text`` (``n_words`` tokens at most, stops at the end)."""
        ids = self._context_ids(text)
        new: list[str] = []
        for _ in range(n_words):
            logprobs = self._logprobs([ids])[0]
            logprobs[self._banned] = -math.inf
            best = int(logprobs.argmax())
            if best == EOS_ID:
                break
            ids.append(best)
            new.append(self.vocab.words[best])
        return detokenize(new, after=text)

    def generate_text(self, seed_text: str, n_words: int) -> str:
        """The study's ``generate_text``: the seed followed by ``n_words`` greedy words."""
        return seed_text + self.next_words(seed_text, n_words)

    def expand(
        self,
        text: str,
        n: int = 4,
        *,
        max_words: int = 30,
        top_k: int = 40,
        temperature: float = 0.8,
        repetition_penalty: float = 1.2,
        seed: int = 0,
    ) -> list[str]:
        """Up to ``n`` distinct full prompts starting with ``text``, by top-k sampling.

        Words already in the prompt are penalised (as CTRL does) because repetition is what
        users of prompt expanders complain about most. Best mean log-probability first.
        """
        if n < 1:
            return []
        generator = torch.Generator().manual_seed(seed)
        start = self._context_ids(text)
        rows = [list(start) for _ in range(2 * n)]  # oversample: duplicates are dropped
        scores = [0.0] * len(rows)
        lengths = [0] * len(rows)
        done = [False] * len(rows)
        for _ in range(max_words):
            live = [i for i, finished in enumerate(done) if not finished]
            if not live:
                break
            logits = self._logprobs([rows[i] for i in live])
            for row_index, logprobs in zip(live, logits, strict=True):
                adjusted = logprobs.clone()
                seen = [t for t in set(rows[row_index]) if self.vocab.words[t][0].isalnum()]
                if seen:
                    adjusted[seen] -= math.log(repetition_penalty)
                adjusted[self._banned] = -math.inf
                top = torch.topk(adjusted / temperature, min(top_k, len(adjusted)))
                pick = top.indices[
                    torch.multinomial(top.values.softmax(-1), 1, generator=generator)
                ]
                token = int(pick)
                scores[row_index] += float(logprobs[token])
                lengths[row_index] += 1
                if token == EOS_ID:
                    done[row_index] = True
                else:
                    rows[row_index].append(token)
        results: dict[str, float] = {}
        for row, score, length in zip(rows, scores, lengths, strict=True):
            words = [self.vocab.words[t] for t in row[len(start) :]]
            prompt = text + detokenize(words, after=text)
            results.setdefault(prompt, score / max(1, length))
        ranked = sorted(results, key=lambda prompt: -results[prompt])
        return ranked[:n]


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
