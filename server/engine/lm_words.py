"""The LM's part of the blend: P_LM(word | the line so far) for the corpus's candidate words.

``P_LM(w)`` is the LM's probability of ``w``'s tokens followed by a word boundary (a token that
starts with whitespace, or the end of the prompt), from one forward pass over a tree of the
candidates' tokens (``blend.py`` says how it is mixed with the corpus statistics).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from server.engine.blend import remembered
from server.engine.runner import Runner
from server.engine.types import Budget
from server.engine.vocab import Vocabulary

RECENT_LINES = 8  # lines whose words' LM probabilities are kept
REMEMBERED_WORDS = 4096  # words' token ids kept
ROOM = 16  # positions kept free after the context for a candidate's tokens


class LMWordScorer:
    """Scores whole words with the causal LM, remembering the scores of recent lines."""

    def __init__(
        self, runner: Runner, vocab: Vocabulary, encode: Callable[[str], list[int]]
    ) -> None:
        self._runner = runner
        self._vocab = vocab
        self._encode = encode
        # A whitespace word ends where a token starting with whitespace (or the prompt) ends.
        ends = [bool(data) and data[:1].isspace() for data in vocab.token_bytes]
        ends[vocab.eos_id] = True
        self._word_ends = np.array(ends, dtype=np.float32)
        # P_LM(word | line) by (line, separator): it does not change while the word is typed.
        self._scored: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()
        # A candidate word's tokens (" portrait,"): the same words come back at every keystroke.
        self._tokens_of = functools.lru_cache(maxsize=REMEMBERED_WORDS)(
            lambda text: tuple(encode(text)[: ROOM - 1])
        )
        self._context_of = functools.lru_cache(maxsize=RECENT_LINES)(self._context)

    def _context(self, line: str) -> list[int]:
        """The LM's context for ``line``: end-of-text first, room left for a word's tokens."""
        context = [self._vocab.eos_id, *self._encode(line)]
        return context[-(self._runner.max_positions - ROOM) :]

    def probabilities(
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
        logprobs = remembered(
            scored, list(texts), lambda missing: self._score(line, separator, missing, budget)
        )
        return np.exp(np.array(logprobs, dtype=np.float64))

    def _score(
        self, line: str, separator: str, texts: Sequence[str], budget: Budget
    ) -> list[float]:
        """log P_LM of each word after ``line``, from one forward pass over a token tree."""
        vocab, runner = self._vocab, self._runner
        primed = runner.prime(self._context_of(line))
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
            primed,
            [prefix[-1] for prefix in prefixes],
            [nodes[prefix[:-1]] if len(prefix) > 1 else -1 for prefix in prefixes],
        )
        # Only a few entries of each node's distribution are needed: its normaliser, its
        # word-end mass and the next token of each word through it. One exponential of the
        # logits serves all three (a log-softmax and a log-sum-exp took twice as long).
        top = logits.max(axis=1, keepdims=True)
        weights = np.exp(logits - top)
        total = weights.sum(axis=1)
        normaliser = top[:, 0] + np.log(total)
        ends = (weights @ self._word_ends) / total
        word_end = np.log(np.maximum(ends, np.finfo(np.float32).tiny)).tolist()
        paths = [
            [nodes[tuple(tokens[:end])] for end in range(1, len(tokens) + 1)] for tokens in pieces
        ]
        steps = [
            (node, token)
            for path, tokens in zip(paths, pieces, strict=True)
            for node, token in zip(path[:-1], tokens[1:], strict=True)
        ]
        rows = np.array([node for node, _ in steps], dtype=np.int64)
        tokens_taken = np.array([token for _, token in steps], dtype=np.int64)
        taken = (logits[rows, tokens_taken] - normaliser[rows]).tolist()
        starts = primed.logprobs[[tokens[0] if tokens else vocab.eos_id for tokens in pieces]]
        starts = starts.tolist()
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
