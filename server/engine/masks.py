"""``<mask>`` in a prompt: where one sits under the cursor, and how a filler joins the text.

"A portrait of <mask> in the style of" asks for the word that fits the gap; the study answered
it with ``pipeline("fill-mask")``. Completion with the cursor inside or right after a
``<mask>`` offers fillers that replace exactly that span, whatever the model's kind. Pure
string logic: no model.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.engine.requests import check_cursor

MASK = "<mask>"
_OPENERS = frozenset("([{")


@dataclass(frozen=True)
class MaskSpan:
    """A ``<mask>`` at ``text[start:end]`` and the rest of its line on either side."""

    start: int
    end: int
    left: str  # the line up to the mask
    right: str  # the line after the mask

    @property
    def nth(self) -> int:
        """Which mask of the line this is (0 = the first), for models that see every mask."""
        return self.left.count(MASK)


def mask_at(text: str, cursor: int) -> MaskSpan | None:
    """The ``<mask>`` the cursor is inside of or right after, or None.

    A cursor right before a mask is not on it: there the user is typing the word before.
    """
    cursor = check_cursor(text, cursor)
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = len(text) if line_end == -1 else line_end
    start = text.rfind(MASK, line_start, min(cursor + len(MASK) - 1, line_end))
    if start == -1 or not start < cursor <= start + len(MASK):
        return None
    end = start + len(MASK)
    return MaskSpan(start, end, text[line_start:start], text[end:line_end])


def joined(left: str, words: str) -> str:
    """``words`` as they must be inserted after ``left``: a space first when a word precedes.

    "a cat," + "wearing" -> " wearing"; after a space, an opening bracket or at the start of the
    line nothing is added, and punctuation ("," "." ")") is never preceded by a space.
    """
    words = words.strip()
    if not words or not left or left[-1].isspace() or left[-1] in _OPENERS:
        return words
    if not (words[0].isalnum() or words[0] in "(\"'"):
        return words
    return " " + words
