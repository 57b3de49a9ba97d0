"""The simplest systems: no help at all, and prompt-toolkit's suggestion from history."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np

from benchmarks.ksr import MenuItem


class NoSystem:
    """Shows nothing: KSR must come out exactly 0 (a sanity row)."""

    name = "none"

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        return "", []


class PrefixHistory:
    """prompt-toolkit's ``AutoSuggestFromHistory`` with the training prompts as the history.

    That class suggests the rest of the most recent history line starting with the typed text
    (nothing for blank text), and offers no menu. The corpus is de-duplicated, so every prompt
    occurs once and "most frequent" ties everywhere; as prompt-toolkit does, the most recent
    one wins, i.e. the latest line in the training file. Lines are kept sorted so the matches
    of a prefix are one bisected range; the latest among them is an argmax over file positions.
    """

    name = "prefix history"

    def __init__(self, history: Sequence[str]) -> None:
        order = sorted(range(len(history)), key=history.__getitem__)
        self._sorted = [history[i] for i in order]
        self._position = np.asarray(order, dtype=np.int64)

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        if not typed.strip():
            return "", []
        low = bisect_left(self._sorted, typed)
        high = bisect_right(self._sorted, typed, lo=low, key=lambda line: line[: len(typed)])
        if low == high:
            return "", []
        latest = low + int(np.argmax(self._position[low:high]))
        return self._sorted[latest][len(typed) :], []
