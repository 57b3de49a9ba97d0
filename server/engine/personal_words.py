"""The user's own statistics in the word ranking (the personal layer, ``model_store.personal``).

The user's statistics add their likeliest words to the corpus's candidates and take a share of
every word's probability (``Mixing``):

    P(w) = (1 - share) * P(w, as blend.py ranks it) + share * P_personal(w | up to four words)

where ``share`` grows with how often the user has written the two words before the cursor
(``personal_share``): from their first prompt on, their own phrases come back where they wrote
them, while in contexts they never wrote the corpus keeps its say. It is scaled by how well the
user's statistics have been predicting the prompt being written, against the corpus's
(``PersonalWords.style_odds``): a prompt in another style than the user's usual one (a
2022-style prompt from someone who writes anime tags) is left to the corpus after a few words.
Inside a ``Negative prompt:`` part the user's negative prompts' statistics are used.

The LoRAs the user has written (``WrittenLoras``) are offered after ``<lora:`` and ``<``, most
used first, and the weights they gave each come first in the weight menu: nothing
else finishes a LoRA's name.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model_store.ngram.model import WordNgram
from model_store.personal import PersonalLayer
from model_store.personal_counts import NgramCounts

PERSONAL_CANDIDATES = 6  # the personal statistics' best words added to the corpus's
# The personal share is half its maximum where the user has written the words before the
# cursor this many times (tuned with the maximum on modern-style prompts, docs/BENCHMARKS.md).
PERSONAL_HALF_COUNT = 2
_LORA_TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?>")
STYLE_EVIDENCE_CAP = 4.0  # nats one word may move the odds that a prompt is in the user's style
REMEMBERED_STYLES = 256  # lines whose style odds are kept


def personal_share(personal: NgramCounts, words: Sequence[str], maximum: float) -> float:
    """The user's statistics' share of the next word's probability after ``words``: it grows
    with how often they wrote the last two words (the last one, when the pair is new)."""
    if maximum <= 0:
        return 0.0
    seen = personal.written(words)
    return maximum * seen / (seen + PERSONAL_HALF_COUNT)


@dataclass(frozen=True)
class Candidates:
    """Words that may finish the typed one: corpus ids (UNKNOWN for words the corpus never
    saw), texts (empty: the prompt ends) and their corpus probabilities."""

    tokens: list[int]
    texts: list[str]
    corpus: np.ndarray


@dataclass(frozen=True)
class Mixing:
    """The user's statistics' part in one ranking, after ``words``."""

    personal: NgramCounts
    share: float
    words: list[str]

    def with_candidates(
        self,
        corpus: WordNgram,
        history: list[int],
        partial: str,
        allowed: Callable[[str], bool],
        found: Candidates,
    ) -> Candidates:
        """The corpus's candidates, then the user's best words not among them, with their
        corpus probabilities (an unseen word's for a word the corpus never saw)."""
        personal = self.personal
        known = set(found.texts)
        extra: list[str] = []
        for token, _ in personal.ranked(personal.history(self.words), partial):
            text = "" if token == personal.eos else personal.vocab[token]
            if text in known or (text and not allowed(text)):
                continue
            known.add(text)
            extra.append(text)
            if len(extra) == PERSONAL_CANDIDATES:
                break
        if not extra:
            return found
        ids = [corpus.id_of(text) if text else corpus.eos for text in extra]
        probabilities = corpus.probability(
            np.repeat(np.asarray([history], dtype=np.int64), len(ids), axis=0),
            np.asarray(ids, dtype=np.int64),
        )
        return Candidates(
            found.tokens + ids, found.texts + extra, np.concatenate([found.corpus, probabilities])
        )

    def mixed(self, texts: list[str], blended: np.ndarray) -> np.ndarray:
        """Each word's probability with the personal statistics' share mixed in."""
        personal = self.personal
        ids = [personal.id_of(text) if text else personal.eos for text in texts]
        history = np.asarray([personal.history(self.words)], dtype=np.int64)
        mine = personal.probability(
            np.repeat(history, len(ids), axis=0), np.asarray(ids, dtype=np.int64)
        )
        return (1 - self.share) * blended + self.share * mine


class PersonalWords:
    """Decides, for each ranking, whether and how much the user's statistics take part."""

    def __init__(self, layer: PersonalLayer, corpus: WordNgram) -> None:
        self._layer = layer
        self._corpus = corpus
        # Log-odds that the line so far is in the user's style, by (generation, negative,
        # words): the counts change with every learned prompt.
        self._styles: OrderedDict[tuple[int, bool, tuple[str, ...]], float] = OrderedDict()

    @property
    def generation(self) -> int:
        """Changes whenever the user's statistics do: rankings made before are stale."""
        return self._layer.generation

    def mixing(self, words: list[str], negative: bool, maximum: float) -> Mixing | None:
        """How the user's (negative) statistics join a ranking after ``words``; None when
        they have nothing to say there or ``maximum`` (the personal weight) is 0."""
        if maximum <= 0:
            return None
        mine = self._layer.counts(negative)
        if mine is None:
            return None
        odds = self.style_odds(mine, words, negative)
        share = personal_share(mine, words, maximum) * _sigmoid(odds)
        return Mixing(mine, share, words) if share > 0 else None

    def style_odds(self, mine: NgramCounts, words: list[str], negative: bool = False) -> float:
        """Log-odds that the words typed so far are in the user's style: the sum over the
        words of log P_personal - log P_corpus (each capped), remembered per line so that
        each keystroke scores at most the word just finished."""
        line = tuple(words)
        key = (self._layer.generation, negative, line)
        known = self._styles.get(key)
        if known is not None:
            return known
        done = len(words)
        while done > 0 and (*key[:2], line[:done]) not in self._styles:
            done -= 1
        odds = self._styles[(*key[:2], line[:done])] if done else 0.0
        if done < len(words):
            steps = range(done, len(words))
            ratio = np.log(_word_probabilities(mine, words, steps)) - np.log(
                _word_probabilities(self._corpus, words, steps)
            )
            odds += float(np.clip(ratio, -STYLE_EVIDENCE_CAP, STYLE_EVIDENCE_CAP).sum())
        self._styles[key] = odds
        while len(self._styles) > REMEMBERED_STYLES:
            self._styles.popitem(last=False)
        return odds


def _sigmoid(odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-odds))


def _word_probabilities(
    stats: WordNgram | NgramCounts, words: list[str], steps: range
) -> np.ndarray:
    """P(words[i] | the words before it) for each i in ``steps``."""
    histories = np.asarray([stats.history(words[:i]) for i in steps], dtype=np.int64)
    targets = np.asarray([stats.id_of(words[i]) for i in steps], dtype=np.int64)
    return stats.probability(histories, targets)


@dataclass(frozen=True)
class WrittenLora:
    """A LoRA in the user's prompts: its name, the weights they gave it (most used first) and
    in how many places they wrote it."""

    name: str
    weights: tuple[str, ...]
    uses: int


def written_loras(counts: NgramCounts) -> list[WrittenLora]:
    """The LoRAs of ``<lora:name:weight>`` words in the user's prompts, most used first."""
    with counts.lock:  # the learning thread appends to the vocabulary
        ids = counts.vocab.with_prefix("<lora:").tolist()
        found = [(counts.vocab[i], int(counts.unigram_raw[i])) for i in ids]
    uses: Counter[str] = Counter()
    weights: dict[str, Counter[str]] = {}
    for word, count in found:
        if count <= 0:  # forgotten
            continue
        for match in _LORA_TAG.finditer(word):
            name, weight = match.groups()
            uses[name] += count
            if weight:
                weights.setdefault(name, Counter())[weight] += count
    return [
        WrittenLora(name, tuple(w for w, _ in weights.get(name, Counter()).most_common()), used)
        for name, used in sorted(uses.items(), key=lambda item: (-item[1], item[0]))
    ]


class WrittenLoras:
    """``written_loras`` of the user's positive prompts, found again only once they change."""

    def __init__(self, layer: PersonalLayer) -> None:
        self._layer = layer
        self._generation: int | None = None
        self._found: list[WrittenLora] = []

    def __call__(self) -> list[WrittenLora]:
        generation = self._layer.generation
        if generation != self._generation:
            counts = self._layer.counts(negative=False)
            self._found = written_loras(counts) if counts is not None else []
            self._generation = generation
        return self._found
