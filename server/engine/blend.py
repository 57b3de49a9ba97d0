"""Word-level ranking that blends corpus word statistics with the causal LM.

On this corpus a Kneser-Ney word n-gram counted over 1.9M prompts predicts the next word far
better than a small transformer that has read 5M tokens of it (word perplexity about 31
against 560), but it sees at most four words back, while the LM reads the whole line. Each
candidate word ``w`` (the n-gram's likeliest words that start with the typed part) gets

    P(w) = (1 - weight) * P_KN(w | up to four words before) + weight * P_LM(w | the line so far)

where ``P_LM(w)`` is the LM's probability of ``w``'s tokens followed by a word boundary (a
token that starts with whitespace, or the end of the prompt). Linear interpolation, unlike a
log-linear mix, never lets the weaker model veto a word the corpus knows well; the weight was
chosen on dev prompts outside the benchmark's KSR sample (docs/BENCHMARKS.md, the ablation).
Once ``LM_LETTERS`` letters of the word are typed, ``P_KN`` ranks alone.

Words are whitespace-separated with punctuation attached ("portrait,"), as the statistics
count them (``model_store.ngram``).

With a personal layer (``personal_words``), the user's likeliest words join the candidates
before the LM scores them, and the user's statistics take a share of every word's blended
probability; inside a ``Negative prompt:`` part their negative prompts' statistics are used.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol, TypeVar

import numpy as np

from model_store.ngram.model import WordNgram
from server.engine.filters import has_content
from server.engine.personal_words import Candidates, PersonalWords
from server.engine.syntax import CursorContext, cut_unbalanced
from server.engine.types import Budget, EngineSettings, Suggestion
from server.engine.words import per_word, split_typed

K = TypeVar("K")

# The engine's defaults (EngineSettings says why they are what they are).
BLEND_WEIGHT = EngineSettings.blend_weight
LM_LETTERS = EngineSettings.blend_lm_letters
CANDIDATES = 8  # the n-gram's best words that the LM rescores
GHOST_WORDS = 4  # words of ghost text, as the trigram baseline offers
RECENT_RANKINGS = 64
REMEMBERED_PAIRS = 4096  # (word before, word) end-of-prompt probabilities kept


class WordScorer(Protocol):
    """P_LM of each word after a line (``lm_words.LMWordScorer``)."""

    def probabilities(
        self, line: str, separator: str, texts: Sequence[str], budget: Budget
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class RankedWord:
    """A whole word that may replace the typed part of the current word."""

    text: str  # the word as counted, e.g. "portrait," (empty: the prompt ends here)
    probability: float  # blended
    ends_prompt: float  # P_KN(end of prompt | the word before, this word)


class WordBlender:
    """Ranks next words by the blended probability; strings in, strings out.

    Without an LM (``lm`` None: the server serves the statistics while the model loads)
    the corpus ranks alone. Needs numpy only: the LM's part is ``lm_words``.
    """

    def __init__(
        self,
        stats: WordNgram,
        lm: WordScorer | None = None,
        personal: PersonalWords | None = None,
    ) -> None:
        self._stats = stats
        self._lm = lm
        self._personal = personal
        self._recent: OrderedDict[tuple[str, bool, float, bool, int], list[RankedWord]] = (
            OrderedDict()
        )
        self._ends_known: dict[tuple[int, int], float] = {}
        self._settings = EngineSettings()
        self._allowed: Callable[[str], bool] = lambda _: True

    def rank(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool] = lambda _: True,
        use_lm: bool = True,
        weight: float = BLEND_WEIGHT,
        lm_letters: int | None = LM_LETTERS,
        negative: bool = False,
    ) -> list[RankedWord]:
        """Words that finish the word being typed at the end of ``before``, best first.

        ``allowed`` filters words out before the LM scores them (blocklist, safe mode). An
        empty ``text`` means the prompt likely ends here (offered only after a whole word).
        The LM's part is skipped, leaving the corpus ranking, without ``use_lm``, once
        ``lm_letters`` letters of the word are typed (None: never), or once the time budget
        is spent. The last few rankings are remembered: an editor asks for the menu and the
        ghost text at the same place. One cut short by the time budget is not: it would
        stand for the full ranking at that place from then on. ``negative``: the word is in a
        negative prompt (the user's negative statistics join in, not their prompts').
        """
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the blend weight must be within [0, 1], got {weight}")
        typed = split_typed(before)
        if lm_letters is not None:
            use_lm = use_lm and len(typed[1]) < lm_letters
        use_lm = use_lm and weight > 0 and self._lm is not None
        generation = self._personal.generation if self._personal is not None else 0
        key = (before, use_lm, weight, negative, generation)
        known = self._recent.get(key)
        if known is not None:
            return known
        ranked, complete = self._rank(before, typed, budget, allowed, use_lm, weight, negative)
        if complete:
            self._recent[key] = ranked
            while len(self._recent) > RECENT_RANKINGS:
                self._recent.popitem(last=False)
        return ranked

    def configure(self, settings: EngineSettings, allowed: Callable[[str], bool]) -> None:
        """The settings and word filter that menu and ghost items follow; remembered rankings
        are dropped (they were made under the old ones)."""
        self._settings = settings
        self._allowed = allowed
        self._recent.clear()

    def _rank(
        self,
        before: str,
        typed: tuple[list[str], str, int],
        budget: Budget,
        allowed: Callable[[str], bool],
        use_lm: bool,
        weight: float,
        negative: bool,
    ) -> tuple[list[RankedWord], bool]:
        """The ranking, and whether it is what was asked for (False: the LM was to score but
        the time ran out)."""
        stats = self._stats
        words, partial, start = typed
        history = stats.history(words)
        candidates = list(
            islice(
                (
                    (token, p)
                    for token, p in stats.ranked(history, partial)
                    if token == stats.eos or allowed(stats.vocab[token])
                ),
                CANDIDATES,
            )
        )
        found = Candidates(
            [token for token, _ in candidates],
            ["" if token == stats.eos else stats.vocab[token] for token, _ in candidates],
            np.array([p for _, p in candidates], dtype=np.float64),
        )
        mixing = None
        if self._personal is not None:  # the user's own statistics (personal_words)
            mixing = self._personal.mixing(words, negative, self._settings.personal_weight)
        if mixing is not None:
            found = mixing.with_candidates(stats, history, partial, allowed, found)
        if not found.texts:
            return [], True
        texts, corpus = found.texts, found.corpus
        blended = corpus
        complete = not use_lm
        if use_lm and self._lm is not None and budget.left():
            separator = " " if before[:start].strip() else ""
            lm = self._lm.probabilities(before[:start].rstrip(), separator, texts, budget)
            # At weight 1 an LM probability can underflow to 0: keep every score loggable.
            blended = np.maximum((1 - weight) * corpus + weight * lm, np.finfo(np.float64).tiny)
            complete = True
        if mixing is not None:
            blended = mixing.mixed(texts, blended)
        ends = self._ends(history[-1], found.tokens)
        order = np.argsort(-blended, kind="stable")
        return [RankedWord(texts[i], float(blended[i]), ends[i]) for i in order], complete

    def ghost(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool],
        weight: float = BLEND_WEIGHT,
        lm_letters: int | None = LM_LETTERS,
        negative: bool = False,
    ) -> tuple[str, float]:
        """Up to ``GHOST_WORDS`` best words chained greedily: text to insert at the cursor, and
        the sum of the words' log-probabilities.

        The LM rescores the first word only, which keeps ghost text within a keystroke's
        budget; the words after it follow the corpus ranking.
        """
        inserted = ""
        logprob = 0.0
        _, partial, _ = split_typed(before)
        context = before
        for step in range(GHOST_WORDS):
            ranked = self.rank(
                context,
                budget,
                allowed,
                use_lm=step == 0,
                weight=weight,
                lm_letters=lm_letters,
                negative=negative,
            )
            if not ranked or not ranked[0].text:
                break
            word = ranked[0].text
            logprob += math.log(ranked[0].probability)
            # The first word finishes the typed part (or starts after the typed space).
            inserted += word[len(partial) :] if step == 0 else " " + word
            context = before + inserted + " "
            if not budget.left():
                break
        return inserted, logprob

    def menu_items(self, text: str, where: CursorContext, budget: Budget) -> list[Suggestion]:
        """Menu words at the cursor, best first (under ``configure``'s settings and filter).

        A word item replaces the typed part of the word and, like a tag completer, adds the
        space that follows it unless the prompt likely ends there or a space follows already.
        """
        before = text[where.segment_start : where.cursor]
        _, partial, start = split_typed(before)
        spaced = not text[where.cursor : where.cursor + 1].isspace()
        settings = self._settings
        ranked = self.rank(
            before,
            budget,
            self._allowed,
            weight=settings.blend_weight,
            lm_letters=settings.blend_lm_letters,
            negative=where.negative,
        )
        skipped = {partial}  # choosing the typed word itself gains nothing
        if settings.menu_skips_ghost and ranked and _shown_in_ghost(ranked[0].text, partial, where):
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

    def ghost_item(self, text: str, where: CursorContext, budget: Budget) -> Suggestion | None:
        """Ghost text at the cursor: a few likeliest words, as the n-gram would chain them."""
        before = text[where.segment_start : where.cursor]
        settings = self._settings
        ghost, logprob = self.ghost(
            before,
            budget,
            self._allowed,
            settings.blend_weight,
            settings.blend_lm_letters,
            negative=where.negative,
        )
        ghost = cut_unbalanced(ghost, where.brackets)
        _, partial, _ = split_typed(before)
        if not has_content(partial + ghost):
            return None
        score = per_word(logprob, partial + ghost)
        return Suggestion("phrase", where.cursor, where.cursor, ghost, score)

    def _ends(self, previous: int, tokens: Sequence[int]) -> list[float]:
        """P_KN(end of prompt | the word before, each word), from the trigram.

        It only decides a menu item's trailing space; asking the 4- and 5-gram tables about
        eight new contexts took 3 ms of every keystroke. Pairs are remembered: while a word
        is typed, the word before it stays and its candidates recur.
        """
        if len(self._ends_known) > REMEMBERED_PAIRS:
            self._ends_known.clear()
        stats = self._stats

        def probabilities(pairs: list[tuple[int, int]]) -> list[float]:
            history = np.array(pairs, dtype=np.int64)
            return stats.probability(history, np.full(len(pairs), stats.eos, np.int64)).tolist()

        return remembered(self._ends_known, [(previous, t) for t in tokens], probabilities)


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


def remembered(
    known: dict[K, float], keys: list[K], compute: Callable[[list[K]], list[float]]
) -> list[float]:
    """``known[key]`` for each key, computing the missing ones in one batch and keeping them."""
    missing = [key for key in dict.fromkeys(keys) if key not in known]
    if missing:
        known.update(zip(missing, compute(missing), strict=True))
    return [known[key] for key in keys]
