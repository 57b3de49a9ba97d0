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
count them (``model_store.wordstats``).

With a personal layer (``model_store.personal``), the user's own statistics add their likeliest
words to the candidates and take a share of every word's probability (``_with_personal``):

    P(w) = (1 - personal) * P(w, as above) + personal * P_personal(w | up to four words before)

where ``personal`` grows with how often the user has written the two words before the cursor
(``personal_share``): from their first prompt on, their own phrases come back where they wrote
them, while in contexts they never wrote the corpus keeps its say. It is scaled by how well the
user's statistics have been predicting the prompt being written, against the corpus's
(``style_odds``): a prompt in another style than the user's usual one (a 2022-style prompt
from someone who writes anime tags) is left to the corpus after a few words. Inside a
``Negative prompt:`` part the user's negative prompts' statistics are used.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

import numpy as np
import torch

from model_store.personal import PersonalLayer
from model_store.wordstats import KneserNeyNgram, split_typed
from server.engine.decoding import Budget
from server.engine.runner import Runner
from server.engine.types import EngineSettings
from server.engine.vocab import Vocabulary

K = TypeVar("K")

# The engine's defaults (EngineSettings says why they are what they are).
BLEND_WEIGHT = EngineSettings.blend_weight
LM_LETTERS = EngineSettings.blend_lm_letters
CANDIDATES = 8  # the n-gram's best words that the LM rescores
PERSONAL_CANDIDATES = 6  # the personal statistics' best words added to them
# The personal share is half its maximum where the user has written the words before the
# cursor this many times (tuned with the maximum on modern-style prompts, docs/BENCHMARKS.md).
PERSONAL_HALF_COUNT = 2
STYLE_EVIDENCE_CAP = 4.0  # nats one word may move the odds that a prompt is in the user's style
REMEMBERED_STYLES = 256  # lines whose style odds are kept
GHOST_WORDS = 4  # words of ghost text, as the trigram baseline offers
RECENT_RANKINGS = 64
RECENT_LINES = 8  # lines whose words' LM probabilities are kept
REMEMBERED_PAIRS = 4096  # (word before, word) end-of-prompt probabilities kept
REMEMBERED_WORDS = 4096  # words' token ids kept
ROOM = 16  # positions kept free after the context for a candidate's tokens


@dataclass(frozen=True)
class RankedWord:
    """A whole word that may replace the typed part of the current word."""

    text: str  # the word as counted, e.g. "portrait," (empty: the prompt ends here)
    probability: float  # blended
    ends_prompt: float  # P_KN(end of prompt | the word before, this word)


class WordBlender:
    """Ranks next words by the blended probability; strings in, strings out."""

    def __init__(
        self,
        stats: KneserNeyNgram,
        runner: Runner,
        vocab: Vocabulary,
        encode: Callable[[str], list[int]],
        personal: PersonalLayer | None = None,
    ) -> None:
        self._stats = stats
        self._personal = personal
        self._runner = runner
        self._vocab = vocab
        self._encode = encode
        # A whitespace word ends where a token starting with whitespace (or the prompt) ends.
        ends = [bool(data) and data[:1].isspace() for data in vocab.token_bytes]
        ends[vocab.eos_id] = True
        self._word_end_ids = torch.tensor(
            [i for i, end in enumerate(ends) if end], dtype=torch.long
        )
        self._recent: OrderedDict[tuple[object, ...], list[RankedWord]] = OrderedDict()
        # P_LM(word | line) by (line, separator): it does not change while the word is typed.
        self._scored: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        self._ends_known: dict[tuple[int, int], float] = {}
        # A candidate word's tokens (" portrait,"): the same words come back at every keystroke.
        self._tokens_of = functools.lru_cache(maxsize=REMEMBERED_WORDS)(
            lambda text: tuple(encode(text)[: ROOM - 1])
        )
        self._context_of = functools.lru_cache(maxsize=RECENT_LINES)(self._context)
        # Log-odds that the line so far is in the user's style, by (statistics, words).
        self._styles: OrderedDict[tuple[int, tuple[str, ...]], float] = OrderedDict()

    def rank(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool] = lambda _: True,
        use_lm: bool = True,
        weight: float = BLEND_WEIGHT,
        lm_letters: int | None = LM_LETTERS,
        negative: bool = False,
        personal_weight: float = EngineSettings.personal_weight,
    ) -> list[RankedWord]:
        """Words that finish the word being typed at the end of ``before``, best first.

        ``allowed`` filters words out before the LM scores them (blocklist, safe mode). An
        empty ``text`` means the prompt likely ends here (offered only after a whole word).
        The LM's part is skipped, leaving the corpus ranking, without ``use_lm``, once
        ``lm_letters`` letters of the word are typed (None: never), or once the time budget
        is spent. The last few rankings are remembered: an editor asks for the menu and the
        ghost text at the same place. ``negative``: the word is in a negative prompt;
        ``personal_weight``: the most the user's statistics may weigh (``personal_share``).
        """
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the blend weight must be within [0, 1], got {weight}")
        typed = split_typed(before)
        if lm_letters is not None:
            use_lm = use_lm and len(typed[1]) < lm_letters
        generation = self._personal.generation if self._personal is not None else 0
        key = (before, use_lm, weight, negative, personal_weight, generation)
        known = self._recent.get(key)
        if known is not None:
            return known
        ranked = self._rank(
            before, typed, budget, allowed, use_lm and weight > 0, weight, negative, personal_weight
        )
        self._recent[key] = ranked
        while len(self._recent) > RECENT_RANKINGS:
            self._recent.popitem(last=False)
        return ranked

    def forget(self) -> None:
        """Drop remembered rankings (the filters they were made under changed)."""
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
        personal_weight: float,
    ) -> list[RankedWord]:
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
        tokens = [token for token, _ in candidates]
        texts = ["" if token == stats.eos else stats.vocab[token] for token in tokens]
        corpus = np.array([p for _, p in candidates], dtype=np.float64)
        mine = self._personal.snapshot(negative).stats if self._personal is not None else None
        share = 0.0
        if mine is not None and personal_weight > 0:
            share = personal_share(mine, words, personal_weight) * _sigmoid(
                self._style_odds(mine, words)
            )
        if mine is not None and share > 0:  # the user's words join in
            tokens, texts, corpus = _with_personal_candidates(
                stats, mine, history, words, partial, allowed, tokens, texts, corpus
            )
        if not texts:
            return []
        blended = corpus
        if use_lm and budget.left():
            separator = " " if before[:start].strip() else ""
            lm = self._lm_probabilities(before[:start].rstrip(), separator, texts, budget)
            # At weight 1 an LM probability can underflow to 0: keep every score loggable.
            blended = np.maximum((1 - weight) * corpus + weight * lm, np.finfo(np.float64).tiny)
        if mine is not None and share > 0:
            blended = _with_personal(mine, share, words, texts, blended)
        ends = self._ends(history[-1], tokens)
        order = np.argsort(-blended, kind="stable")
        return [RankedWord(texts[i], float(blended[i]), ends[i]) for i in order]

    def ghost(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool],
        weight: float = BLEND_WEIGHT,
        lm_letters: int | None = LM_LETTERS,
        negative: bool = False,
        personal_weight: float = EngineSettings.personal_weight,
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
                personal_weight=personal_weight,
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

    def _style_odds(self, mine: KneserNeyNgram, words: list[str]) -> float:
        """Log-odds that the words typed so far are in the user's style: the sum over the
        words of log P_personal - log P_corpus (each capped), remembered per line so that
        each keystroke scores at most the word just finished."""
        key = (id(mine), tuple(words))
        known = self._styles.get(key)
        if known is not None:
            return known
        done = len(words)
        while done > 0 and (id(mine), key[1][:done]) not in self._styles:
            done -= 1
        odds = self._styles.get((id(mine), key[1][:done]), 0.0)
        if done < len(words):
            stats = self._stats
            steps = range(done, len(words))
            ratio = np.log(_word_probabilities(mine, words, steps)) - np.log(
                _word_probabilities(stats, words, steps)
            )
            odds += float(np.clip(ratio, -STYLE_EVIDENCE_CAP, STYLE_EVIDENCE_CAP).sum())
        self._styles[key] = odds
        while len(self._styles) > REMEMBERED_STYLES:
            self._styles.popitem(last=False)
        return odds

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

        return _remembered(self._ends_known, [(previous, t) for t in tokens], probabilities)

    def _context(self, line: str) -> list[int]:
        """The LM's context for ``line``: end-of-text first, room left for a word's tokens."""
        context = [self._vocab.eos_id, *self._encode(line)]
        return context[-(self._runner.max_positions - ROOM) :]

    def _lm_probabilities(
        self, line: str, separator: str, texts: Sequence[str], budget: Budget
    ) -> np.ndarray:
        """P_LM of each word (its tokens, then a word boundary) after ``line``.

        Scores are remembered per line: while a word is typed, the line before it stays the
        same and its candidates keep coming back, so the LM runs only for words it has not
        scored after this line yet.
        """
        key = (line, separator)
        scored = self._scored.pop(key, {})
        self._scored[key] = scored  # the most recent line last
        while len(self._scored) > RECENT_LINES:
            self._scored.popitem(last=False)
        logprobs = _remembered(
            scored, list(texts), lambda missing: self._score(line, separator, missing, budget)
        )
        return np.exp(np.array(logprobs, dtype=np.float64))

    @torch.inference_mode()
    def _score(
        self, line: str, separator: str, texts: Sequence[str], budget: Budget
    ) -> list[float]:
        """log P_LM of each word after ``line``, from one forward pass over a token tree."""
        vocab, runner = self._vocab, self._runner
        first = runner.prime(self._context_of(line))
        # Each word's tokens are a path in a tree of shared prefixes; node i is the word
        # prefix ``prefixes[i]``. An empty text (the prompt ends) is scored as EOS itself.
        pieces = [self._tokens_of(separator + text) if text else () for text in texts]
        nodes: dict[tuple[int, ...], int] = {}
        for tokens in pieces:
            for end in range(1, len(tokens) + 1):
                nodes.setdefault(tuple(tokens[:end]), len(nodes))
        prefixes = list(nodes)
        budget.check()
        logits = runner.logits_tree(
            [prefix[-1] for prefix in prefixes],
            [nodes[prefix[:-1]] if len(prefix) > 1 else -1 for prefix in prefixes],
        ).float()
        # Only a few entries of each node's distribution are needed: its normaliser, its
        # word-end mass and the next token of each word through it. One exponential of the
        # logits serves all three (a log-softmax and a log-sum-exp took twice as long).
        top = logits.max(dim=1, keepdim=True).values
        weights = (logits - top).exp_()
        total = weights.sum(dim=1)
        normaliser = top.squeeze(1) + total.log()
        ends = weights.index_select(1, self._word_end_ids).sum(dim=1) / total
        word_end = ends.clamp_min(torch.finfo(torch.float32).tiny).log().tolist()
        paths = [
            [nodes[tuple(tokens[:end])] for end in range(1, len(tokens) + 1)] for tokens in pieces
        ]
        steps = [
            (node, token)
            for path, tokens in zip(paths, pieces, strict=True)
            for node, token in zip(path[:-1], tokens[1:], strict=True)
        ]
        rows = torch.tensor([node for node, _ in steps], dtype=torch.long)
        taken = (
            logits[rows, torch.tensor([token for _, token in steps], dtype=torch.long)]
            - normaliser[rows]
        ).tolist()
        starts = first[[tokens[0] if tokens else vocab.eos_id for tokens in pieces]].tolist()
        scores = []
        used = 0
        for path, tokens, start in zip(paths, pieces, starts, strict=True):
            if not tokens:
                scores.append(start)
                continue
            inner = len(tokens) - 1
            scores.append(start + word_end[path[-1]] + sum(taken[used : used + inner]))
            used += inner
        return scores


# The personal layer (issue 14) ---------------------------------------------------------------
def personal_share(personal: KneserNeyNgram, words: Sequence[str], maximum: float) -> float:
    """The user's statistics' share of the next word's probability after ``words``: it grows
    with how often they wrote the last two words (the last one, when the pair is new)."""
    if maximum <= 0:
        return 0.0
    history = personal.history(words)
    a, b = history[-2], history[-1]
    seen = 0
    if a >= 0 and b >= 0:
        key = a * personal.width + b
        at = int(np.searchsorted(personal.ctx3_keys, key))
        if at < len(personal.ctx3_keys) and personal.ctx3_keys[at] == key:
            seen = int(personal.ctx3_total[at])
    if not seen and b >= 0:
        seen = int(personal.ctx2_total[b])
    return maximum * seen / (seen + PERSONAL_HALF_COUNT)


def _sigmoid(odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-odds))


def _word_probabilities(stats: KneserNeyNgram, words: list[str], steps: range) -> np.ndarray:
    """P(words[i] | the words before it) for each i in ``steps``."""
    histories = np.asarray([stats.history(words[:i]) for i in steps], dtype=np.int64)
    targets = np.asarray([stats.id_of(words[i]) for i in steps], dtype=np.int64)
    return stats.probability(histories, targets)


def _with_personal_candidates(
    stats: KneserNeyNgram,
    personal: KneserNeyNgram,
    history: list[int],
    words: list[str],
    partial: str,
    allowed: Callable[[str], bool],
    tokens: list[int],
    texts: list[str],
    corpus: np.ndarray,
) -> tuple[list[int], list[str], np.ndarray]:
    """The corpus's candidates (corpus ids, texts, probabilities), then the personal
    statistics' best words not among them, with their corpus probabilities: a word the corpus
    never saw keeps the id ``UNKNOWN`` and gets its unseen-word probability."""
    known = set(texts)
    extra: list[str] = []
    for token, _ in personal.ranked(personal.history(words), partial):
        text = "" if token == personal.eos else personal.vocab[token]
        if text in known or (text and not allowed(text)):
            continue
        known.add(text)
        extra.append(text)
        if len(extra) == PERSONAL_CANDIDATES:
            break
    if not extra:
        return tokens, texts, corpus
    ids = [stats.id_of(text) if text else stats.eos for text in extra]
    found = stats.probability(
        np.repeat(np.asarray([history], dtype=np.int64), len(ids), axis=0),
        np.asarray(ids, dtype=np.int64),
    )
    return tokens + ids, texts + extra, np.concatenate([corpus, found])


def _with_personal(
    personal: KneserNeyNgram,
    share: float,
    words: list[str],
    texts: list[str],
    blended: np.ndarray,
) -> np.ndarray:
    """Each word's probability with the personal statistics' ``share`` mixed in."""
    ids = [personal.id_of(text) if text else personal.eos for text in texts]
    history = np.asarray([personal.history(words)], dtype=np.int64)
    mine = personal.probability(
        np.repeat(history, len(ids), axis=0), np.asarray(ids, dtype=np.int64)
    )
    return (1 - share) * blended + share * mine


def _remembered(
    known: dict[K, float], keys: list[K], compute: Callable[[list[K]], list[float]]
) -> list[float]:
    """``known[key]`` for each key, computing the missing ones in one batch and keeping them."""
    missing = [key for key in dict.fromkeys(keys) if key not in known]
    if missing:
        known.update(zip(missing, compute(missing), strict=True))
    return [known[key] for key in keys]
