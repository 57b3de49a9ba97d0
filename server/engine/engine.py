"""The completion engine: text and cursor in, ranked suggestions out.

A request is answered in four steps:

1. ``syntax.analyse`` decides what the cursor is in: prompt text, a place where a fixed list
   fits (``--ar``, a weight after ``(word:``), or a place where the model has nothing to say
   (``<lora:...>``). Only the current line (without a ``Negative prompt:`` label) is context.
2. Token healing (``healing.py``): the text before the cursor is split at the last safe token
   boundary into a *context*, tokenized and fed to the model (reusing the KV cache of the
   previous request), and a typed *tail* that decoding must reproduce byte for byte.
3. Decoding (``decoding.py``): a constrained beam search finishes the current word, greedy
   rows branched on their first free token continue to the end of the phrase
   (``phrases.py``), and seeded top-k sampling writes expansions (``expansions.py``).
4. Filters (``filters.py``, trimming in ``text.py``) drop empty, looping, repeated,
   duplicate, blocked and unsafe candidates; survivors are ranked by log-probability per word
   (``words.per_word``; a word completion is one word, so its plain log-probability
   including its ending). The menu lists words first, then phrases (``ranking.py``).

With corpus statistics, words and ghost text come from the blend (``blend.py``) instead; the
last ghost text is followed as typed (``ghost.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from tokenizers import Tokenizer

from model_store.ngram.model import WordNgram
from model_store.personal import PersonalLayer
from server.engine import decoding
from server.engine.blend import WordBlender
from server.engine.decoding import Word
from server.engine.expansions import sample_expansions
from server.engine.ghost import GhostMemory
from server.engine.healing import Request, prepare
from server.engine.lm_words import LMWordScorer
from server.engine.personal_words import PersonalWords, WrittenLoras
from server.engine.phrases import PhraseDecoder, phrase_suggestions
from server.engine.ranking import merge, option_suggestions, rank
from server.engine.requests import (
    check_cursor,
    check_expand,
    check_limit,
    check_settings,
    set_threads,
)
from server.engine.runner import GPT2Runner, Runner
from server.engine.syntax import CursorContext, analyse
from server.engine.types import Budget, EngineSettings, Suggestion
from server.engine.vocab import Vocabulary, load_tokenizer
from server.engine.vocabulary import PromptVocabulary

# Decoding sizes: small enough for a keystroke on two CPU cores, large enough for choice.
MENU_WORD_WIDTH = 6  # beams when finishing a word for the menu
INLINE_WORD_WIDTH = 4
WORD_EXTRA_TOKENS = 3  # tokens a word may grow beyond what was typed
WORD_PLAUSIBILITY = 6.0  # words this many nats less likely than the best are not offered
MENU_PHRASES = 3
MENU_PHRASE_TOKENS = 5
INLINE_PHRASES = 3
EXPLICIT_PHRASES = 6
INLINE_PHRASE_TOKENS = 12

# An expansion is asked for explicitly and waited for; on a busy machine the per-keystroke
# budget would cut it to a few words. Cancellation still stops it at once.
EXPANSION_MIN_BUDGET_MS = 3000


class CompletionEngine:
    """Ranks word completions, next phrases and expansions from a causal LM."""

    def __init__(
        self,
        runner: Runner,
        tokenizer: Tokenizer,
        eos_id: int,
        settings: EngineSettings | None = None,
        threads: int | None = None,
        word_stats: WordNgram | None = None,
        source: Path | None = None,
        personal: PersonalLayer | None = None,
    ) -> None:
        """``runner``: the model (``load_runner``, or a scripted one in tests); ``tokenizer``
        and ``eos_id``: its fast tokenizer and end-of-text token (``load_tokenizer``);
        ``source``: the checkpoint directory they came from, if any.

        ``word_stats``: the training corpus's word statistics; with them, words and ghost text
        are ranked by the blend of ``blend.py``, which saves many more keystrokes than the LM
        alone (docs/BENCHMARKS.md). Phrases in the menu and expansions stay the LM's.
        ``personal``: the user's own statistics, blended into those words (with ``word_stats``).

        ``threads``: the process-wide BLAS thread count (``requests.set_threads``).
        """
        set_threads(threads)
        self._runner = runner
        self._tokenizer = tokenizer
        self.source = source
        self._vocab = Vocabulary(tokenizer, eos_id, runner.vocab_size)
        self._blender = (
            WordBlender(
                word_stats,
                LMWordScorer(self._runner, self._vocab, self._encode),
                PersonalWords(personal, word_stats) if personal is not None else None,
            )
            if word_stats is not None
            else None
        )
        self._lock = threading.Lock()
        self._ghost = GhostMemory()
        self._phrases = PhraseDecoder(runner, self._vocab)
        # Tags, LoRAs (those the user wrote too), embeddings, wildcards.
        self.vocabulary = PromptVocabulary(WrittenLoras(personal) if personal is not None else None)
        self.update_settings(settings or EngineSettings())

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        settings: EngineSettings | None = None,
        threads: int | None = None,
        word_stats: WordNgram | None = None,
        personal: PersonalLayer | None = None,
    ) -> CompletionEngine:
        """Load a model directory (weights, config and tokenizer) without touching a network."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
        tokenizer, eos_id = load_tokenizer(path)
        return cls(
            load_runner(path),
            tokenizer,
            eos_id,
            settings=settings,
            threads=threads,
            word_stats=word_stats,
            source=path,
            personal=personal,
        )

    @property
    def runner(self) -> Runner:
        """The model runner (exposed for tests and benchmarks that inspect cache reuse)."""
        return self._runner

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    def update_settings(self, settings: EngineSettings) -> None:
        """Validate and apply settings; raise ValueError (and keep the old ones) if invalid."""
        terms = check_settings(settings, self._runner.max_positions // 2)
        banned = self._vocab.unusable_mask | terms.banned_tokens(self._vocab)
        with self._lock:
            self._settings = settings
            self._terms = terms
            self._banned = banned
            self._ghost.forget()  # chosen under the old settings, as were the cached phrases
            self._phrases.forget()
            self.vocabulary.update_settings(settings)
            if self._blender is not None:
                self._blender.configure(settings, self._allowed)

    # Public requests -----------------------------------------------------------------------

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]:
        """Menu items: current-word completions and next phrases, best first.

        A cursor past the end of ``text`` is clamped to the end (as LSP does for positions
        past a line's end); a negative cursor raises ValueError.
        """
        cursor = check_cursor(text, cursor)
        limit = check_limit(limit, self._settings.max_items)
        with self._lock:
            budget = Budget(self._settings.time_budget_ms, stop)
            budget.check()
            where = analyse(text, cursor)
            special = self.vocabulary.special(text, cursor, self._allowed) if limit else None
            if special is not None:  # <lora:, __: the user's LoRAs and files, not the model's
                return special[:limit]
            if limit == 0 or where.mode == "none":
                return []
            if where.mode == "options":
                return option_suggestions(where)[:limit]
            blended = self._blended_words(text, where, budget)
            request = self._prepare(text, where)
            if request is None:
                return []
            words: list[Word] = []
            if blended is not None:
                word_items = blended  # distinct words: "white" and "white," both count
            else:
                words = self._words(request, MENU_WORD_WIDTH, budget) if where.in_word else []
                word_items = rank(self._word_suggestions(request, words))
            word_items = self.vocabulary.words(text, where, word_items, self._allowed)
            phrase_items: list[Suggestion] = []
            if not where.inside_word:
                rows = self._phrases.rows(request, words, MENU_PHRASES, self._banned)
                rows = self._phrases.decode(request, rows, MENU_PHRASE_TOKENS, budget, self._banned)
                phrase_items = rank(phrase_suggestions(request, rows, True, self._terms))
            return merge(word_items, phrase_items, limit)

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """Ghost text: the best next phrase first; when explicit, alternatives and an expansion.

        Every item inserts at the cursor (``start == end == cursor``); in a word, its text
        begins with the rest of the word. Nothing is offered in the middle of a word, inside
        tags or parameters. Cursor handling as in ``complete``.
        """
        cursor = check_cursor(text, cursor)
        with self._lock:
            budget = Budget(self._settings.time_budget_ms, stop)
            budget.check()
            where = analyse(text, cursor)
            if where.mode != "text" or where.inside_word:
                return []
            # A blended ghost is chained afresh at every keystroke, not followed as typed: it
            # then reaches a word further, and the rankings along the chain are cached.
            blended = self._blended_ghost(text, where, budget)
            if not explicit:
                if blended is not None:
                    return [blended]
                remembered = self._ghost.typed_through(text, cursor)
                if remembered is not None:
                    return [remembered]
            request = self._prepare(text, where)
            if request is None:
                return []
            width = MENU_WORD_WIDTH if explicit else INLINE_WORD_WIDTH
            words = self._words(request, width, budget) if where.in_word else []
            count = EXPLICIT_PHRASES if explicit else INLINE_PHRASES
            rows = self._phrases.rows(request, words, count, self._banned)
            rows = self._phrases.decode(request, rows, INLINE_PHRASE_TOKENS, budget, self._banned)
            # Ghost text finishes the likeliest word; its best continuation comes first.
            phrases = rank(phrase_suggestions(request, rows, False, self._terms), keep_order=True)
            if not phrases and words:
                phrases = rank(self._word_suggestions(request, words, at_cursor=True))
            if blended is not None:
                phrases = rank([blended, *phrases], keep_order=True)
            if not explicit:
                self._ghost.remember(text, cursor, phrases[0] if phrases else None)
                return phrases[:1]
            expansions = self._expansions(request, words, 1, budget) if budget.left() else []
            extra = [
                Suggestion("expansion", cursor, cursor, continuation, score)
                for continuation, score in expansions
            ]
            return rank(phrases[:3] + extra, keep_order=True)

    def expand(self, text: str, n: int = 4, *, stop: threading.Event | None = None) -> list[str]:
        """n diverse full prompts that start with the user's text, best first.

        The text is continued at its end; the last line is the context. Nothing is returned
        when the end is inside a tag or Midjourney parameters. With a fixed ``seed`` setting
        the result is repeatable unless the time budget cut decoding short.
        """
        check_expand(text, n)
        with self._lock:
            budget = Budget(max(self._settings.time_budget_ms, EXPANSION_MIN_BUDGET_MS), stop)
            budget.check()
            where = analyse(text, len(text))
            if n == 0 or where.mode != "text":
                return []
            request = self._prepare(text, where)
            if request is None:
                return []
            words = self._words(request, INLINE_WORD_WIDTH, budget) if where.in_word else []
            expansions = self._expansions(request, words, n, budget)
            return [text + continuation for continuation, _ in expansions]

    # Blended words (corpus statistics with the LM) ------------------------------------------

    def _allowed(self, word: str) -> bool:
        return self._terms.search(word) is None

    def _blended_words(
        self, text: str, where: CursorContext, budget: Budget
    ) -> list[Suggestion] | None:
        """Menu words from the blend, or None without statistics or inside a word."""
        if self._blender is None or not self._settings.corpus_statistics or where.inside_word:
            return None
        return self._blender.menu_items(text, where, budget)

    def _blended_ghost(self, text: str, where: CursorContext, budget: Budget) -> Suggestion | None:
        """Ghost text from the blend: a few likeliest words, as the n-gram would chain them."""
        if self._blender is None or not self._settings.corpus_statistics:
            return None
        return self._blender.ghost_item(text, where, budget)

    # Preparation ---------------------------------------------------------------------------

    def _prepare(self, text: str, where: CursorContext) -> Request | None:
        reserved = (
            max(self._settings.max_expansion_tokens, INLINE_PHRASE_TOKENS) + WORD_EXTRA_TOKENS + 2
        )
        return prepare(
            text, where, self._runner, self._tokenizer, self._encode, self._vocab.eos_id, reserved
        )

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    # Words ---------------------------------------------------------------------------------

    def _words(self, request: Request, width: int, budget: Budget) -> list[Word]:
        """Finished words, best first, without those far less likely than the likeliest.

        Beam search also finds odd spellings ("portraitd", " portrait" + "d"): each is a
        word to the search, but hundreds of times less likely than the real one.
        """
        words = decoding.word_search(
            self._runner,
            self._vocab,
            request.context,
            request.tail_bytes,
            request.word_offset,
            width=width,
            extra_steps=WORD_EXTRA_TOKENS,
            banned=self._banned,
            budget=budget,
        )
        if not words:
            return []
        best = max(word.total for word in words)
        return [word for word in words if word.total >= best - WORD_PLAUSIBILITY]

    def _word_suggestions(
        self, request: Request, words: list[Word], at_cursor: bool = False
    ) -> list[Suggestion]:
        """Finished words other than the one typed; ``at_cursor`` gives ghost-text form."""
        where = request.where
        result = []
        for word in words:
            text = word.data[request.word_offset :].decode("utf-8")
            if text == request.partial or self._terms.search(text) is not None:
                continue
            if at_cursor:
                result.append(
                    Suggestion(
                        "word", where.cursor, where.cursor, text[len(request.partial) :], word.score
                    )
                )
            else:
                result.append(
                    Suggestion("word", where.word_start, where.word_end, text, word.score)
                )
        return result

    def _expansions(
        self, request: Request, words: list[Word], n: int, budget: Budget
    ) -> list[tuple[str, float]]:
        return sample_expansions(
            self._runner,
            self._vocab,
            request,
            words,
            n,
            budget,
            self._settings,
            self._banned,
            self._terms,
        )


def load_runner(path: Path) -> Runner:
    """The runner for a checkpoint directory: the fast path for GPT-2, transformers otherwise.

    It lives here rather than in runner.py because hf_runner.py builds on runner.py: the
    choice between them belongs to their user.
    """
    if GPT2Runner.serves(path):
        return GPT2Runner.from_directory(path)
    from server.engine.hf_runner import HFRunner

    return HFRunner.from_directory(path)
