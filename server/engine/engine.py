"""The completion engine: text and cursor in, ranked suggestions out.

A request is answered in four steps:

1. ``syntax.analyse`` decides what the cursor is in: prompt text, a place where a fixed list
   fits (``--ar``, a weight after ``(word:``), or a place where the model has nothing to say
   (``<lora:...>``). Only the current line (without a ``Negative prompt:`` label) is context.
2. Token healing: the text before the cursor is split at the last safe token boundary into a
   *context*, tokenized and fed to the model (reusing the KV cache of the previous request),
   and a typed *tail* that decoding must reproduce byte for byte.
3. Decoding (``decoding.py``): a constrained beam search finishes the current word, greedy
   rows branched on their first free token continue to the end of the phrase, and seeded
   top-k sampling writes expansions.
4. Filters (``filters.py``) drop empty, looping, repeated, duplicate, blocked and unsafe
   candidates; survivors are ranked by log-probability per word (``decoding.per_word``; a
   word completion is one word, so its plain log-probability including its ending). The
   menu lists words first, then phrases.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from model_store.personal import PersonalLayer
from model_store.wordstats import KneserNeyNgram, split_typed
from server.engine import decoding
from server.engine.blend import WordBlender
from server.engine.decoding import Budget, Row, Word
from server.engine.filters import (
    TermFilter,
    clean_expansion,
    dedupe_key,
    has_content,
    known_phrases,
    loop_start,
    repeats_known,
)
from server.engine.masks import check_cursor
from server.engine.runner import Runner, load_runner
from server.engine.syntax import CursorContext, analyse, cut_unbalanced, phrase_end
from server.engine.types import EngineSettings, Suggestion, SuggestionKind
from server.engine.vocab import Vocabulary, load_tokenizer

# Decoding sizes: small enough for a keystroke on two CPU cores, large enough for choice.
MENU_WORD_WIDTH = 6  # beams when finishing a word for the menu
INLINE_WORD_WIDTH = 4
WORD_EXTRA_TOKENS = 3  # tokens a word may grow beyond what was typed
WORD_BRANCHES = 2  # best words whose continuations are explored as phrases
WORD_PLAUSIBILITY = 6.0  # words this many nats less likely than the best are not offered
PHRASE_PLAUSIBILITY = 5.0  # the same for phrases, per word
MENU_PHRASES = 3
MENU_PHRASE_TOKENS = 5
INLINE_PHRASES = 3
EXPLICIT_PHRASES = 6
INLINE_PHRASE_TOKENS = 12
TOP_K = 40
EXPANSION_MIN_TOKENS = 16  # an expansion is a detailed prompt, not one more word
REPETITION_PENALTY = 1.2
MAX_TAIL_BYTES = 64  # a "word" longer than this is not something to complete
CONTEXT_CHUNK = 32  # long contexts are cut from the start in steps of this many tokens
MAX_EXPANSIONS = 32
DEFAULT_THREADS = 1
PHRASE_CACHE_SIZE = 512


@dataclass(frozen=True)
class _Ghost:
    """The last ghost text and where it was offered, to follow the user typing it."""

    before: str
    after: str
    kind: SuggestionKind
    text: str
    score: float


@dataclass(frozen=True)
class _Decoded:
    """A greedy phrase row as decoded, to reuse for the same starting tokens."""

    tokens: tuple[int, ...]
    data: bytes
    logprob: float
    ended: bool
    eos: bool  # ended by the end-of-prompt token


@dataclass(frozen=True)
class _Request:
    """A cursor position prepared for decoding."""

    where: CursorContext
    segment: str  # the current line from ``where.segment_start`` to its end
    before: str  # the segment up to the cursor
    tail: str  # typed text after the last safe token boundary, reproduced by decoding
    partial: str  # the typed part of the current word (a suffix of ``tail``)
    context_ids: list[int]
    first: torch.Tensor  # next-token log-probs after the context

    @property
    def tail_bytes(self) -> bytes:
        return self.tail.encode("utf-8")

    @property
    def word_offset(self) -> int:
        """Bytes of the tail before the word (a backed-off space or punctuation)."""
        return len(self.tail[: len(self.tail) - len(self.partial)].encode("utf-8"))


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
        word_stats: KneserNeyNgram | None = None,
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

        ``threads`` sets torch's (process-wide) thread count. The default is one: each step
        of these small models is a chain of tiny matrix products that a second thread cannot
        speed up, and when another process holds the other core (an image generator, a
        training run) OpenMP's barriers made every request 20-30x slower in measurements.
        """
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads or DEFAULT_THREADS)
        self._runner = runner
        self._tokenizer = tokenizer
        self.source = source
        self._vocab = Vocabulary(tokenizer, eos_id, runner.vocab_size)
        self._blender = (
            WordBlender(word_stats, self._runner, self._vocab, self._encode, personal)
            if word_stats is not None
            else None
        )
        self._lock = threading.Lock()
        self._ghost: _Ghost | None = None
        self._phrase_cache: OrderedDict[tuple[object, ...], _Decoded] = OrderedDict()
        self.update_settings(settings or EngineSettings())

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        settings: EngineSettings | None = None,
        threads: int | None = None,
        word_stats: KneserNeyNgram | None = None,
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
        if settings.max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {settings.max_items}")
        if not settings.temperature > 0:
            raise ValueError(f"temperature must be positive, got {settings.temperature}")
        if settings.max_expansion_tokens < 1:
            raise ValueError(
                f"max_expansion_tokens must be at least 1, got {settings.max_expansion_tokens}"
            )
        if settings.max_expansion_tokens > self._runner.max_positions // 2:
            raise ValueError(
                f"max_expansion_tokens must be at most {self._runner.max_positions // 2} "
                f"for this model, got {settings.max_expansion_tokens}"
            )
        if not 0.0 <= settings.blend_weight <= 1.0:
            raise ValueError(f"blend_weight must be within [0, 1], got {settings.blend_weight}")
        if not 0.0 <= settings.personal_weight <= 1.0:
            raise ValueError(
                f"personal_weight must be within [0, 1], got {settings.personal_weight}"
            )
        letters = settings.blend_lm_letters
        if letters is not None and (not isinstance(letters, int) or letters < 0):
            raise ValueError(f"blend_lm_letters must be None or a count >= 0, got {letters!r}")
        if settings.time_budget_ms <= 0:
            raise ValueError(f"time_budget_ms must be positive, got {settings.time_budget_ms}")
        terms = TermFilter(settings.blocklist, settings.safe_mode)
        banned = self._vocab.unusable_mask | terms.banned_tokens(self._vocab)
        with self._lock:
            self._settings = settings
            self._terms = terms
            self._banned = banned
            self._ghost = None  # chosen under the old settings, as were the cached phrases
            self._phrase_cache.clear()
            if self._blender is not None:
                self._blender.forget()

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
        limit = self._settings.max_items if limit is None else limit
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        with self._lock, torch.inference_mode():
            budget = Budget(self._settings.time_budget_ms, stop)
            budget.check()
            where = analyse(text, cursor)
            if limit == 0 or where.mode == "none":
                return []
            if where.mode == "options":
                return _options(where)[:limit]
            blended = self._blended_words(text, where, budget)  # before _prepare: both prime
            request = self._prepare(text, where)
            if request is None:
                return []
            words: list[Word] = []
            if blended is not None:
                word_items = blended  # distinct words: "white" and "white," both count
            else:
                words = self._words(request, MENU_WORD_WIDTH, budget) if where.in_word else []
                word_items = _rank(self._word_suggestions(request, words))
            phrase_items: list[Suggestion] = []
            if not where.inside_word:
                rows = self._phrase_rows(request, words, MENU_PHRASES)
                rows = self._decode_phrases(request, rows, MENU_PHRASE_TOKENS, budget)
                phrase_items = _rank(self._phrase_suggestions(request, rows, menu=True))
            return _merge(word_items, phrase_items, limit)

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]:
        """Ghost text: the best next phrase first; when explicit, alternatives and an expansion.

        Every item inserts at the cursor (``start == end == cursor``); in a word, its text
        begins with the rest of the word. Nothing is offered in the middle of a word, inside
        tags or parameters. Cursor handling as in ``complete``.
        """
        cursor = check_cursor(text, cursor)
        with self._lock, torch.inference_mode():
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
                remembered = self._typed_through(text, cursor)
                if remembered is not None:
                    return [remembered]
            request = self._prepare(text, where)
            if request is None:
                return []
            width = MENU_WORD_WIDTH if explicit else INLINE_WORD_WIDTH
            words = self._words(request, width, budget) if where.in_word else []
            count = EXPLICIT_PHRASES if explicit else INLINE_PHRASES
            rows = self._phrase_rows(request, words, count)
            rows = self._decode_phrases(request, rows, INLINE_PHRASE_TOKENS, budget)
            # Ghost text finishes the likeliest word; its best continuation comes first.
            phrases = _rank(self._phrase_suggestions(request, rows, menu=False), keep_order=True)
            if not phrases and words:
                phrases = _rank(self._word_suggestions(request, words, at_cursor=True))
            if blended is not None:
                phrases = _rank([blended, *phrases], keep_order=True)
            if not explicit:
                self._remember_ghost(text, cursor, phrases[0] if phrases else None)
                return phrases[:1]
            expansions = self._expansions(request, words, 1, budget) if budget.left() else []
            extra = [
                Suggestion("expansion", cursor, cursor, continuation, score)
                for continuation, score in expansions
            ]
            return _rank(phrases[:3] + extra, keep_order=True)

    def expand(self, text: str, n: int = 4, *, stop: threading.Event | None = None) -> list[str]:
        """n diverse full prompts that start with the user's text, best first.

        The text is continued at its end; the last line is the context. Nothing is returned
        when the end is inside a tag or Midjourney parameters. With a fixed ``seed`` setting
        the result is repeatable unless the time budget cut decoding short.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(n, int) or not 0 <= n <= MAX_EXPANSIONS:
            raise ValueError(f"n must be an integer from 0 to {MAX_EXPANSIONS}, got {n!r}")
        with self._lock, torch.inference_mode():
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

    def _remember_ghost(self, text: str, cursor: int, ghost: Suggestion | None) -> None:
        self._ghost = None
        if ghost is not None:
            self._ghost = _Ghost(
                text[:cursor], text[cursor:], ghost.kind, ghost.new_text, ghost.score
            )

    def _typed_through(self, text: str, cursor: int) -> Suggestion | None:
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

    # Blended words (corpus statistics with the LM) ------------------------------------------

    def _allowed(self, word: str) -> bool:
        return self._terms.search(word) is None

    def _blended_words(
        self, text: str, where: CursorContext, budget: Budget
    ) -> list[Suggestion] | None:
        """Menu words from the blend, or None without statistics or inside a word.

        A word item replaces the typed part of the word and, like a tag completer, adds the
        space that follows it unless the prompt likely ends there or a space follows already.
        """
        if self._blender is None or not self._settings.corpus_statistics or where.inside_word:
            return None
        before = text[where.segment_start : where.cursor]
        _, partial, start = split_typed(before)
        spaced = not text[where.cursor : where.cursor + 1].isspace()
        ranked = self._blender.rank(
            before,
            budget,
            self._allowed,
            weight=self._settings.blend_weight,
            lm_letters=self._settings.blend_lm_letters,
            negative=where.negative,
            personal_weight=self._settings.personal_weight,
        )
        skipped = {partial}  # choosing the typed word itself gains nothing
        if (
            self._settings.menu_skips_ghost
            and ranked
            and _shown_in_ghost(ranked[0].text, partial, where)
        ):
            skipped.add(ranked[0].text)  # the ghost text's first word: one keystroke away
        items = []
        for word in ranked:
            if not word.text or word.text in skipped:
                continue
            if cut_unbalanced(word.text, where.brackets) != word.text:
                continue
            new_text = word.text + " " if spaced and word.ends_prompt < 0.5 else word.text
            start_at = where.segment_start + start
            items.append(
                Suggestion("word", start_at, where.cursor, new_text, math.log(word.probability))
            )
        return items

    def _blended_ghost(self, text: str, where: CursorContext, budget: Budget) -> Suggestion | None:
        """Ghost text from the blend: a few likeliest words, as the n-gram would chain them."""
        if self._blender is None or not self._settings.corpus_statistics:
            return None
        before = text[where.segment_start : where.cursor]
        ghost, logprob = self._blender.ghost(
            before,
            budget,
            self._allowed,
            self._settings.blend_weight,
            self._settings.blend_lm_letters,
            negative=where.negative,
            personal_weight=self._settings.personal_weight,
        )
        ghost = cut_unbalanced(ghost, where.brackets)
        _, partial, _ = split_typed(before)
        if not has_content(partial + ghost):
            return None
        score = decoding.per_word(logprob, partial + ghost)
        return Suggestion("phrase", where.cursor, where.cursor, ghost, score)

    # Preparation ---------------------------------------------------------------------------

    def _prepare(self, text: str, where: CursorContext) -> _Request | None:
        """Split the text before the cursor into context and typed tail; prime the model."""
        line_end = text.find("\n", where.cursor)
        segment = text[where.segment_start : len(text) if line_end == -1 else line_end]
        before = text[where.segment_start : where.cursor]
        word_start = where.word_start - where.segment_start
        boundary = self._tail_start(before, word_start)
        tail = before[boundary:]
        if len(tail.encode("utf-8")) > MAX_TAIL_BYTES:
            return None
        context = self._encode(before[:boundary])
        room = (
            self._runner.max_positions
            - 1
            - max(self._settings.max_expansion_tokens, INLINE_PHRASE_TOKENS)
            - len(tail.encode("utf-8"))
            - WORD_EXTRA_TOKENS
            - 2
        )
        if len(context) > room:
            cut = math.ceil((len(context) - room) / CONTEXT_CHUNK) * CONTEXT_CHUNK
            context = context[cut:]
        context_ids = [self._vocab.eos_id, *context]
        first = self._runner.prime(context_ids)
        partial = before[word_start:] if where.in_word else ""
        return _Request(where, segment, before, tail, partial, context_ids, first)

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _tail_start(self, before: str, word_start: int) -> int:
        """Where the typed tail begins: the last pre-token, backed off to the word's start.

        Tokens before that point cannot change whatever the user types next, so they are a
        stable context; the tail is re-typed by constrained decoding. Trailing whitespace is
        its own tail (GPT-2 attaches a space to the following word).
        """
        stripped = len(before.rstrip())
        if stripped < len(before):
            return stripped
        pre_tokenizer = self._tokenizer.pre_tokenizer
        if pre_tokenizer is None:
            start = word_start if word_start < len(before) else max(0, len(before) - 1)
            while start > 0 and before[start - 1].isspace():
                start -= 1
            return start
        starts = [offsets[0] for _, offsets in pre_tokenizer.pre_tokenize_str(before)]
        if not starts:
            return 0
        start = starts[-1]
        if word_start < start:
            start = max(s for s in starts if s <= word_start)
        return start

    # Words ---------------------------------------------------------------------------------

    def _words(self, request: _Request, width: int, budget: Budget) -> list[Word]:
        """Finished words, best first, without those far less likely than the likeliest.

        Beam search also finds odd spellings ("portraitd", " portrait" + "d"): each is a
        word to the search, but hundreds of times less likely than the real one.
        """
        words = decoding.word_search(
            self._runner,
            self._vocab,
            request.first,
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
        self, request: _Request, words: list[Word], at_cursor: bool = False
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

    # Phrases -------------------------------------------------------------------------------

    def _phrase_rows(self, request: _Request, words: list[Word], count: int) -> list[Row]:
        """Rows that differ in their first free token, so the phrases offered differ.

        In a word, rows start with one of the best finished words and then a token that
        starts the next word; otherwise with the likeliest tokens agreeing with the tail.
        """
        starts: list[tuple[torch.Tensor, float, list[int]]]  # (scores, prior, forced tokens)
        if request.where.in_word:
            # Ending the prompt right after the word is a fine branch: the ghost is the word.
            starts_word = self._vocab.boundary_mask & ~self._banned
            starts = [
                (
                    word.next_logprobs.masked_fill(~starts_word, decoding.NEG_INF),
                    word.logprob,
                    word.tokens,
                )
                for word in words[:WORD_BRANCHES]
            ]
        else:
            never = self._banned.clone()
            never[self._vocab.eos_id] = True  # a phrase that ends before it starts is none
            tail = request.tail_bytes
            if tail:
                never = torch.ones_like(never)
                never[self._vocab.allowed(self._vocab.consistent(tail), tail, self._banned)] = False
            starts = [(request.first.masked_fill(never, decoding.NEG_INF), 0.0, [])]
        branches: list[tuple[float, int, list[int]]] = []
        for group, (scores, prior, forced) in enumerate(starts):
            top = torch.topk(scores, count)
            for value, token in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                if value > decoding.NEG_INF:
                    branches.append((prior + value, group, [*forced, token]))
        branches.sort(key=lambda branch: branch[0], reverse=True)
        return [Row(forced=deque(tokens), group=group) for _, group, tokens in branches[:count]]

    def _decode_phrases(
        self, request: _Request, rows: list[Row], max_tokens: int, budget: Budget
    ) -> list[Row]:
        """Greedy continuations of the rows, remembered by the tokens they start from.

        Greedy decoding from the same tokens always gives the same phrase, and while the user
        types a word its likeliest completion, hence the rows, rarely change ("portra",
        "portrai" -> " portrait" ","), so each keystroke in a word only pays for the word.
        """
        brackets, in_word = request.where.brackets, request.where.in_word

        def end_rule(generated: str) -> int | None:
            return phrase_end(generated, brackets, in_word)

        # In a word the rows' forced tokens cover the typed tail; otherwise it constrains them.
        common = (tuple(request.context_ids), max_tokens, brackets, in_word)
        common += (b"" if in_word else request.tail_bytes,)
        tail_chars = len(request.tail)
        todo: list[tuple[tuple[object, ...], Row]] = []
        for row in rows:
            key = (*common, tuple(row.forced))
            known = self._phrase_cache.get(key)
            if known is None:
                todo.append((key, row))
                continue
            self._phrase_cache.move_to_end(key)
            row.forced.clear()
            row.tokens, row.data, row.logprob = list(known.tokens), known.data, known.logprob
            row.done = True
            generated = row.data.decode("utf-8", errors="ignore")[tail_chars:]
            row.end = len(generated) if known.eos else end_rule(generated)
            row.ended = known.ended and row.end is not None
        decoding.decode_rows(
            self._runner,
            self._vocab,
            request.first,
            [row for _, row in todo],
            request.tail_bytes,
            policy=decoding.greedy_policy(self._banned),
            end_rule=end_rule,
            max_new_tokens=max_tokens,
            banned=self._banned,
            budget=budget,
        )
        for key, row in todo:
            if row.ended or row.new_tokens >= max_tokens:  # not cut short by the time budget
                eos = bool(row.tokens) and row.tokens[-1] == self._vocab.eos_id
                self._phrase_cache[key] = _Decoded(
                    tuple(row.tokens), row.data, row.logprob, row.ended, eos
                )
        while len(self._phrase_cache) > PHRASE_CACHE_SIZE:
            self._phrase_cache.popitem(last=False)
        return rows

    def _phrase_suggestions(
        self, request: _Request, rows: list[Row], menu: bool
    ) -> list[Suggestion]:
        """Turn decoded rows into suggestions, dropping any that fail a quality filter.

        Menu items replace the typed part of the word (so a client's filtering on it works)
        and come best first; ghost text inserts at the cursor and comes in the order of the
        word it finishes, then best first.
        """
        where = request.where
        known = known_phrases(request.segment, where.cursor - where.segment_start)
        phrase_start = max(request.before.rfind(separator) + 1 for separator in ",;|\n")
        current_phrase = request.before[phrase_start:]
        partial = request.partial
        found: list[tuple[int, Suggestion]] = []
        for row in rows:
            if len(row.data) < len(request.tail_bytes):
                continue
            generated = row.data.decode("utf-8", errors="ignore")[len(request.tail) :]
            if row.ended and row.end is not None:
                generated = generated[: row.end]
            else:
                generated = _drop_unfinished_word(generated, partial)
            loop = loop_start(partial + generated)
            if loop is not None:
                generated = generated[: max(0, loop - len(partial))]
            generated = cut_unbalanced(generated, where.brackets).rstrip(" \t,;|")
            generated = _drop_trailing_function_words(generated, partial)
            if _starts_fresh(request.before):
                generated = generated.lstrip()
            if menu and where.in_word and _only_word(generated):
                continue  # it just finishes the word: the word item says the same
            new_text = partial + generated
            if (
                not generated
                or not has_content(new_text)
                or self._terms.search(new_text, after=len(partial)) is not None
                or repeats_known(current_phrase + generated, known)
            ):
                continue
            score = decoding.per_word(row.logprob, request.partial + generated)
            if menu and where.in_word:
                suggestion = Suggestion("phrase", where.word_start, where.cursor, new_text, score)
            else:
                suggestion = Suggestion("phrase", where.cursor, where.cursor, generated, score)
            found.append((row.group if not menu else 0, suggestion))
        if found:
            best = max(suggestion.score for _, suggestion in found)
            found = [item for item in found if item[1].score >= best - PHRASE_PLAUSIBILITY]
        found.sort(key=lambda item: (item[0], -item[1].score))
        return [suggestion for _, suggestion in found]

    # Expansions ----------------------------------------------------------------------------

    def _expansions(
        self, request: _Request, words: list[Word], n: int, budget: Budget
    ) -> list[tuple[str, float]]:
        """Up to n cleaned continuations with scores, best first; resampled when filters bite.

        In a word, every expansion starts by finishing it as the likeliest word does, then
        a new word: sampling the rest of a typed word yields misspellings ("hilling").
        """
        settings = self._settings
        generator = torch.Generator().manual_seed(settings.seed)
        forced: list[int] = []
        after_word: torch.Tensor | None = None
        if request.where.in_word and words:
            forced = words[0].tokens
            starts_word = self._vocab.boundary_mask & ~self._banned
            starts_word[self._vocab.eos_id] = False
            after_word = starts_word.nonzero().flatten()
        found: dict[str, tuple[str, float]] = {}
        for _ in range(3):
            want = n - len(found)
            rows = [
                Row(forced=deque(forced), next_allowed=after_word)
                for _ in range(want + max(1, want // 2))
            ]
            policy = decoding.sampling_policy(
                self._vocab,
                self._banned,
                request.context_ids,
                temperature=settings.temperature,
                top_k=TOP_K,
                repetition_penalty=REPETITION_PENALTY,
                generator=generator,
                min_new_tokens=min(EXPANSION_MIN_TOKENS, settings.max_expansion_tokens // 2),
            )
            decoding.decode_rows(
                self._runner,
                self._vocab,
                request.first,
                rows,
                request.tail_bytes,
                policy=policy,
                end_rule=_end_of_line,
                max_new_tokens=settings.max_expansion_tokens,
                banned=self._banned,
                budget=budget,
            )
            for row in rows:
                if len(row.data) < len(request.tail_bytes):
                    continue
                generated = row.data.decode("utf-8", errors="ignore")[len(request.tail) :]
                if row.ended and row.end is not None:
                    generated = generated[: row.end]
                else:  # cut short: keep whole phrases only
                    generated = _whole_phrases(generated)
                if _starts_fresh(request.before):
                    generated = generated.lstrip()
                continuation = clean_expansion(
                    request.before, generated, request.where.brackets, self._terms
                )
                if continuation is None:
                    continue
                score = decoding.per_word(row.logprob, request.partial + generated)
                key = dedupe_key(continuation)
                if key not in found or found[key][1] < score:
                    found[key] = (continuation, score)
            if sum(_detailed(text) for text, _ in found.values()) >= n or not budget.left():
                break
        # A model sure it is done after one phrase ("a castle on a hill, by craig mullins")
        # has written a continuation, not a detailed prompt: such come last, resampled first.
        ranked = sorted(
            found.values(), key=lambda item: (_detailed(item[0]), item[1]), reverse=True
        )
        return ranked[:n]


def _detailed(continuation: str) -> bool:
    """Whether an expansion adds at least two phrases (or a dozen words without commas)."""
    return continuation.count(",") >= 2 or len(continuation.split()) >= 12


def _options(where: CursorContext) -> list[Suggestion]:
    """Fixed choices (parameter names, aspect ratios, weights), most common first.

    They have no model score; a small decreasing one keeps their order when ranked.
    """
    return [
        Suggestion("word", where.option_start, where.cursor, option, -0.01 * rank)
        for rank, option in enumerate(where.options)
    ]


def _rank(suggestions: list[Suggestion], keep_order: bool = False) -> list[Suggestion]:
    """Best first, without two suggestions that would produce the same text.

    Words are compared exactly: "fire" and "fire," are different words to type.
    """
    ordered = (
        suggestions if keep_order else sorted(suggestions, key=lambda s: s.score, reverse=True)
    )
    seen: set[tuple[int, str]] = set()
    result = []
    for suggestion in ordered:
        text = suggestion.new_text
        key = (suggestion.start, text if suggestion.kind == "word" else dedupe_key(text))
        if key not in seen:
            seen.add(key)
            result.append(suggestion)
    return result


def _merge(words: list[Suggestion], phrases: list[Suggestion], limit: int) -> list[Suggestion]:
    """The menu: ranked words first (what is being typed), then ranked phrases.

    A quarter of the menu is kept for phrases when there are any.
    """
    reserved = min(len(phrases), max(1, limit // 4))
    chosen = words[: limit - reserved]
    chosen += phrases[: limit - len(chosen)]
    return _rank(chosen, keep_order=True)


# fmt: off
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "of", "with", "and", "in", "on", "at", "by", "for", "to", "from", "as",
    "or", "into", "its", "his", "her", "their", "is", "are",
})
# fmt: on


def _shown_in_ghost(word: str, partial: str, where: CursorContext) -> bool:
    """Whether the blended ghost text starts by finishing ``word``, the best-ranked one: the
    ghost chains from it, and shows it unless brackets cut it or it has no content."""
    rest = word[len(partial) :]
    return (
        bool(word)
        and where.mode == "text"
        and cut_unbalanced(rest, where.brackets) == rest
        and has_content(word)
    )


def _first_word_end(text: str, start: int) -> int:
    """Where the word that ``text[start:]`` begins (or continues) ends."""
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] in "-'_"):
        end += 1
    return end


def _drop_unfinished_word(generated: str, partial: str) -> str:
    """A phrase cut by a limit: drop its last word, which may be cut in half.

    The word the user is typing is kept: the row finished it before going on.
    """
    if generated != generated.rstrip():
        return generated.rstrip()
    text = partial + generated
    keep = _first_word_end(text, len(partial)) if partial else 0
    cut = len(text)
    while cut > keep and (text[cut - 1].isalnum() or text[cut - 1] in "-'_"):
        cut -= 1
    return text[len(partial) : max(cut, len(partial))].rstrip()


def _drop_trailing_function_words(generated: str, partial: str) -> str:
    """ "portrait of a" -> "portrait": a phrase should not end on "of", "a", "with"..."""
    text = partial + generated
    keep = _first_word_end(text, len(partial)) if partial else 0
    while True:
        stripped = text.rstrip(" \t,;")
        start = len(stripped)
        while start > 0 and stripped[start - 1].isalnum():
            start -= 1
        if start < keep or start == len(stripped) or stripped[start:].lower() not in FUNCTION_WORDS:
            break
        text = stripped[:start]
    return text[len(partial) :].rstrip() if len(text) >= len(partial) else ""


def _whole_phrases(generated: str) -> str:
    """An expansion cut by its token limit, up to its last complete phrase."""
    cut = max(generated.rfind(separator) for separator in ",;|")
    return generated[:cut] if cut > 0 else _drop_unfinished_word(generated, "")


def _starts_fresh(before: str) -> bool:
    """At the start of a prompt or after a space, a suggestion must not begin with a space."""
    return not before or before[-1].isspace()


def _only_word(text: str) -> bool:
    return all(char.isalnum() or char in "-'_" for char in text)


def _end_of_line(generated: str) -> int | None:
    index = generated.find("\n")
    return None if index == -1 else index
