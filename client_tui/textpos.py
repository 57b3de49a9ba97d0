"""Python string indices <-> LSP positions (line, UTF-16 code unit column).

LSP counts columns in UTF-16 code units unless another encoding is negotiated, while
prompt-toolkit counts Python characters: an emoji is one character but two code units, so a
naive mapping shifts every edit after it. Lines are split on "\\n" only, which is all the
REPL's buffer ever contains.
"""

from __future__ import annotations

from lsprotocol import types


def _utf16_length(text: str) -> int:
    """Number of UTF-16 code units ``text`` occupies."""
    return len(text.encode("utf-16-le")) // 2


def index_to_position(text: str, index: int) -> types.Position:
    """LSP position of the Python index ``index`` in ``text`` (clamped to the text)."""
    index = max(0, min(index, len(text)))
    before = text[:index]
    line = before.count("\n")
    line_start = before.rfind("\n") + 1
    return types.Position(line=line, character=_utf16_length(before[line_start:]))


def position_to_index(text: str, position: types.Position) -> int:
    """Python index of an LSP position; past-the-end lines or columns clamp to the line end.

    A column that falls inside a surrogate pair maps to the character that contains it.
    """
    lines = text.split("\n")
    if position.line >= len(lines):
        return len(text)
    line_start = sum(len(line) + 1 for line in lines[: position.line])
    units = 0
    for offset, char in enumerate(lines[position.line]):
        if units >= position.character:
            return line_start + offset
        units += 2 if ord(char) > 0xFFFF else 1
        if units > position.character:
            return line_start + offset
    return line_start + len(lines[position.line])


def changed_span(old: str, new: str) -> tuple[int, int, str]:
    """The smallest edit turning ``old`` into ``new``: (start, end in old, replacement).

    Python strings hold code points, so the span never splits a surrogate pair.
    """
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    suffix = 0
    while suffix < limit - start and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    return start, len(old) - suffix, new[start : len(new) - suffix]
