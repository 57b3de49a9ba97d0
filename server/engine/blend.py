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

Words are whitespace-separated with punctuation attached ("portrait,"), as the statistics
count them (``model_store.wordstats``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from model_store.wordstats import KneserNeyNgram, split_typed
from server.engine.decoding import Budget
from server.engine.runner import Runner
from server.engine.vocab import Vocabulary

BLEND_WEIGHT = 0.3
CANDIDATES = 8  # the n-gram's best words that the LM rescores
GHOST_WORDS = 4  # words of ghost text, as the trigram baseline offers
RECENT_RANKINGS = 64
RECENT_LINES = 8  # lines whose words' LM probabilities are kept
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
    ) -> None:
        self._stats = stats
        self._runner = runner
        self._vocab = vocab
        self._encode = encode
        # A whitespace word ends where a token starting with whitespace (or the prompt) ends.
        self._word_end = torch.tensor(
            [bool(data) and data[:1].isspace() for data in vocab.token_bytes]
        )
        self._word_end[vocab.eos_id] = True
        self._recent: OrderedDict[tuple[str, bool, float], list[RankedWord]] = OrderedDict()
        # P_LM(word | line) by (line, separator): it does not change while the word is typed.
        self._scored: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()

    def rank(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool] = lambda _: True,
        use_lm: bool = True,
        weight: float = BLEND_WEIGHT,
    ) -> list[RankedWord]:
        """Words that finish the word being typed at the end of ``before``, best first.

        ``allowed`` filters words out before the LM scores them (blocklist, safe mode). An
        empty ``text`` means the prompt likely ends here (offered only after a whole word).
        The LM's part is skipped, leaving the corpus ranking, without ``use_lm`` or once the
        time budget is spent. The last few rankings are remembered: an editor asks for the
        menu and the ghost text at the same place.
        """
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the blend weight must be within [0, 1], got {weight}")
        key = (before, use_lm, weight)
        known = self._recent.get(key)
        if known is not None:
            return known
        ranked = self._rank(before, budget, allowed, use_lm and weight > 0, weight)
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
        budget: Budget,
        allowed: Callable[[str], bool],
        use_lm: bool,
        weight: float,
    ) -> list[RankedWord]:
        stats = self._stats
        words, partial, start = split_typed(before)
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
        if not candidates:
            return []
        texts = ["" if token == stats.eos else stats.vocab[token] for token, _ in candidates]
        corpus = np.array([p for _, p in candidates])
        blended = corpus
        if use_lm and budget.left():
            separator = " " if before[:start].strip() else ""
            lm = self._lm_probabilities(before[:start].rstrip(), separator, texts, budget)
            # At weight 1 an LM probability can underflow to 0: keep every score loggable.
            blended = np.maximum((1 - weight) * corpus + weight * lm, np.finfo(np.float64).tiny)
        # Whether the prompt ends after the word, from the trigram (the word and the one
        # before): it only decides the menu item's trailing space, and asking the 4- and
        # 5-gram tables about eight new contexts took 3 ms of every keystroke.
        after = np.array([[history[-1], token] for token, _ in candidates], dtype=np.int64)
        ends = stats.probability(after, np.full(len(after), stats.eos, np.int64))
        order = np.argsort(-blended, kind="stable")
        return [RankedWord(texts[i], float(blended[i]), float(ends[i])) for i in order]

    def ghost(
        self,
        before: str,
        budget: Budget,
        allowed: Callable[[str], bool],
        weight: float = BLEND_WEIGHT,
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
            ranked = self.rank(context, budget, allowed, use_lm=step == 0, weight=weight)
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
        missing = [text for text in dict.fromkeys(texts) if text not in scored]
        if missing:
            scored.update(zip(missing, self._score(line, separator, missing, budget), strict=True))
        return np.exp(np.array([scored[text] for text in texts], dtype=np.float64))

    @torch.inference_mode()
    def _score(
        self, line: str, separator: str, texts: Sequence[str], budget: Budget
    ) -> list[float]:
        """log P_LM of each word after ``line``, from one forward pass over a token tree."""
        vocab, runner = self._vocab, self._runner
        context = [vocab.eos_id, *self._encode(line)]
        context = context[-(runner.max_positions - ROOM) :]
        first = runner.prime(context)
        # Each word's tokens are a path in a tree of shared prefixes; node i is the word
        # prefix ``prefixes[i]``. An empty text (the prompt ends) is scored as EOS itself.
        pieces = [self._encode(separator + text)[: ROOM - 1] if text else [] for text in texts]
        nodes: dict[tuple[int, ...], int] = {}
        for tokens in pieces:
            for end in range(1, len(tokens) + 1):
                nodes.setdefault(tuple(tokens[:end]), len(nodes))
        prefixes = list(nodes)
        budget.check()
        after = torch.log_softmax(
            runner.logits_tree(
                [prefix[-1] for prefix in prefixes],
                [nodes[prefix[:-1]] if len(prefix) > 1 else -1 for prefix in prefixes],
            ).float(),
            dim=-1,
        )
        word_end = torch.logsumexp(after[:, self._word_end], dim=1)
        scores = []
        for tokens in pieces:
            if not tokens:
                scores.append(float(first[vocab.eos_id]))
                continue
            path = [nodes[tuple(tokens[:end])] for end in range(1, len(tokens) + 1)]
            score = float(first[tokens[0]]) + float(word_end[path[-1]])
            steps = zip(path[:-1], tokens[1:], strict=True)
            score += sum(float(after[node, token]) for node, token in steps)
            scores.append(score)
        return scores
