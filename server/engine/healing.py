"""Token healing: the text before the cursor as a stable context and a typed tail.

The context ends at the last safe token boundary, so whatever the user types next cannot
change its tokens: it is fed to the model once (reusing the KV cache of the previous request).
The tail after it is re-typed byte for byte by constrained decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Tokenizer

from server.engine.decoding import Row
from server.engine.runner import Context, Runner
from server.engine.syntax import CursorContext

MAX_TAIL_BYTES = 64  # a "word" longer than this is not something to complete
CONTEXT_CHUNK = 32  # long contexts are cut from the start in steps of this many tokens


@dataclass(frozen=True)
class Request:
    """A cursor position prepared for decoding."""

    where: CursorContext
    segment: str  # the current line from ``where.segment_start`` to its end
    before: str  # the segment up to the cursor
    tail: str  # typed text after the last safe token boundary, reproduced by decoding
    partial: str  # the typed part of the current word (a suffix of ``tail``)
    context: Context  # primed: what decoding continues

    @property
    def tail_bytes(self) -> bytes:
        return self.tail.encode("utf-8")

    @property
    def word_offset(self) -> int:
        """Bytes of the tail before the word (a backed-off space or punctuation)."""
        return len(self.tail[: len(self.tail) - len(self.partial)].encode("utf-8"))

    def written(self, row: Row) -> tuple[str, bool] | None:
        """What ``row`` wrote after the typed tail, up to its end, and whether it ended there
        (False: a limit cut it); None when it did not get through the tail."""
        if len(row.data) < len(self.tail_bytes):
            return None
        generated = row.data.decode("utf-8", errors="ignore")[len(self.tail) :]
        if row.ended and row.end is not None:
            return generated[: row.end], True
        return generated, False


def prepare(
    text: str,
    where: CursorContext,
    runner: Runner,
    tokenizer: Tokenizer,
    encode: Callable[[str], list[int]],
    eos_id: int,
    reserved: int,
) -> Request | None:
    """Split the text before the cursor into context and typed tail; prime the model.

    ``reserved``: positions kept free after the context and the tail for what decoding adds.
    """
    line_end = text.find("\n", where.cursor)
    segment = text[where.segment_start : len(text) if line_end == -1 else line_end]
    before = text[where.segment_start : where.cursor]
    word_start = where.word_start - where.segment_start
    boundary = tail_start(tokenizer, before, word_start)
    tail = before[boundary:]
    if len(tail.encode("utf-8")) > MAX_TAIL_BYTES:
        return None
    context = encode(before[:boundary])
    room = runner.max_positions - 1 - reserved - len(tail.encode("utf-8"))
    if len(context) > room:
        cut = math.ceil((len(context) - room) / CONTEXT_CHUNK) * CONTEXT_CHUNK
        context = context[cut:]
    primed = runner.prime([eos_id, *context])
    partial = before[word_start:] if where.in_word else ""
    return Request(where, segment, before, tail, partial, primed)


def tail_start(tokenizer: Tokenizer, before: str, word_start: int) -> int:
    """Where the typed tail begins: the last pre-token, backed off to the word's start.

    Tokens before that point cannot change whatever the user types next, so they are a
    stable context; the tail is re-typed by constrained decoding. Trailing whitespace is
    its own tail (GPT-2 attaches a space to the following word).
    """
    stripped = len(before.rstrip())
    if stripped < len(before):
        return stripped
    pre_tokenizer = tokenizer.pre_tokenizer
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
