"""Words as the corpus statistics count them, split at the cursor for completion."""

from __future__ import annotations

from prompt_words import count_words, whitespace_words


def split_typed(typed: str) -> tuple[list[str], str, int]:
    """(complete tokens, the partial word under the cursor, where that partial word starts)."""
    if not typed or typed[-1].isspace():
        return whitespace_words(typed), "", len(typed)
    tokens = whitespace_words(typed)
    partial = tokens[-1]
    return tokens[:-1], partial, len(typed) - len(partial)


def per_word(logprob: float, text: str) -> float:
    """Log-probability per word of ``text``: the length unit a user sees.

    Tokens are no fair unit: a word spelled by three unlikely tokens ("b" "lu" "a") would
    beat the same word spelled by one likely token ("blue"). Characters are no fair unit
    either: a long unlikely word would beat a short likely one. Alternatives for the word
    being typed are all one word long, so they are ranked by their plain probability.
    """
    return logprob / max(1, count_words(text))
