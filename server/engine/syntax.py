"""Prompt syntax around the cursor: what may be completed there, and where a phrase ends.

Prompts carry markup that a completion must never break: A1111/ComfyUI weights ``(word:1.2)``
and ``((word))``, de-emphasis ``[word]``, prompt editing ``[a:b:0.5]``, alternations
``{a|b}``, extra-network tags ``<lora:name:0.8>``, ``BREAK``, Midjourney parameters
``--ar 16:9`` and a ``Negative prompt:`` line. Everything here is pure string logic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from prompt_words import is_word_char, is_word_part, word_span

OPENERS = {"(": ")", "[": "]", "{": "}", "<": ">"}
CLOSERS = {closer: opener for opener, closer in OPENERS.items()}
PHRASE_SEPARATORS = ",;"
NEGATIVE_LABEL = "negative prompt:"
# A1111's generation-parameters line ("Steps: 20, Sampler: Euler a, ...") is not prompt text.
PARAMETERS_LINE = re.compile(r"\s*Steps:\s*\d", re.IGNORECASE)
MIDJOURNEY_PARAM_START = re.compile(r"(?:^|(?<=\s))--[A-Za-z]")
MIDJOURNEY_PARAMS = (
    "ar",
    "aspect",
    "chaos",
    "c",
    "no",
    "q",
    "quality",
    "repeat",
    "r",
    "seed",
    "stop",
    "style",
    "stylize",
    "s",
    "tile",
    "v",
    "version",
    "niji",
    "weird",
    "w",
    "iw",
    "sref",
    "cref",
    "raw",
)
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "4:5", "5:4")
WEIGHTS = ("1.1", "1.2", "1.3", "1.4", "1.5", "0.9", "0.8", "0.7")

Mode = Literal["text", "options", "none"]


def open_brackets(text: str) -> str:
    """Openers in ``text`` still unclosed at its end, innermost last; ``\\(`` is literal."""
    stack: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in OPENERS:
            stack.append(char)
        elif char in CLOSERS and stack and stack[-1] == CLOSERS[char]:
            stack.pop()
        index += 1
    return "".join(stack)


@dataclass(frozen=True)
class CursorContext:
    """What the cursor sits in, from the point of view of completion.

    ``mode`` is "text" (the model may complete), "options" (a fixed list fits, e.g. aspect
    ratios after ``--ar``) or "none" (nothing sensible to offer, e.g. inside ``<lora:...>``).
    The model's context is ``text[segment_start:cursor]``: the current line, without a
    ``Negative prompt:`` label.
    """

    mode: Mode
    cursor: int
    segment_start: int
    segment_end: int
    word_start: int
    word_end: int
    brackets: str = ""
    options: tuple[str, ...] = ()
    option_start: int = 0
    negative: bool = False  # after a ``Negative prompt:`` label

    @property
    def in_word(self) -> bool:
        return self.word_start < self.cursor

    @property
    def inside_word(self) -> bool:
        """True when word characters follow the cursor: it is in the middle of a word."""
        return self.word_end > self.cursor


def analyse(text: str, cursor: int) -> CursorContext:
    """Classify the cursor position in ``text`` (``0 <= cursor <= len(text)``)."""
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = len(text) if line_end == -1 else line_end
    line = text[line_start:line_end]

    def none() -> CursorContext:
        return CursorContext("none", cursor, cursor, cursor, cursor, cursor)

    if PARAMETERS_LINE.match(line):
        return none()
    segment_start = line_start
    stripped = len(line) - len(line.lstrip())
    negative = line[stripped:].casefold().startswith(NEGATIVE_LABEL)
    if negative:
        label_end = line_start + stripped + len(NEGATIVE_LABEL)
        if cursor < label_end:
            return none()
        segment_start = label_end
        while segment_start < cursor and text[segment_start] in " \t":
            segment_start += 1

    before = text[segment_start:cursor]
    param = MIDJOURNEY_PARAM_START.search(before)
    if param is not None:
        return _midjourney_parameters(before, segment_start, cursor) or none()

    brackets = open_brackets(before)
    if brackets.endswith("<"):
        return none()
    if brackets.endswith(("(", "[")):
        group = before[before.rfind(brackets[-1]) :]
        weight = re.search(r":\s*([\d.]*)$", group)
        if weight is not None and group.count(":") == 1 and brackets[-1] == "(":
            typed = weight.group(1)
            closing = "" if text.startswith(")", cursor) else ")"  # "(cat:1.2)" is done then
            options = tuple(
                value + closing for value in WEIGHTS if value.startswith(typed) and value != typed
            )
            return CursorContext(
                "options",
                cursor,
                segment_start,
                line_end,
                cursor,
                cursor,
                brackets,
                options,
                cursor - len(typed),
            )
        if weight is not None and group.count(":") >= 2:
            return none()  # the step of a prompt edit [a:b:0.5]: a number, not words

    word_start, word_end = word_span(text, cursor, segment_start)
    word_end = min(word_end, line_end)
    return CursorContext(
        "text", cursor, segment_start, line_end, word_start, word_end, brackets, negative=negative
    )


def _midjourney_parameters(before: str, offset: int, cursor: int) -> CursorContext | None:
    """Parameter names after ``--`` and aspect ratios after ``--ar``; None for anything else."""
    name = re.search(r"--([A-Za-z]*)$", before)
    if name is not None:
        typed = name.group(1)
        options = tuple(p for p in MIDJOURNEY_PARAMS if p.startswith(typed) and p != typed)
        return CursorContext(
            "options", cursor, offset, cursor, cursor, cursor, "", options, cursor - len(typed)
        )
    ratio = re.search(r"--(?:ar|aspect)\s+([\d:]*)$", before)
    if ratio is not None:
        typed = ratio.group(1)
        options = tuple(r for r in ASPECT_RATIOS if r.startswith(typed) and r != typed)
        return CursorContext(
            "options", cursor, offset, cursor, cursor, cursor, "", options, cursor - len(typed)
        )
    return None


def _break_at(text: str, index: int) -> bool:
    """``BREAK`` as a whole word at ``index`` (A1111's chunk separator)."""
    return (
        text.startswith("BREAK", index)
        and (index == 0 or not is_word_char(text[index - 1]))
        and (index + 5 == len(text) or not is_word_char(text[index + 5]))
    )


def phrase_end(generated: str, brackets: str, finishing_word: bool) -> int | None:
    """Where the phrase ends in ``generated`` (text the model added after the cursor), or None.

    A phrase ends before a separator once it has content, before a closer of a bracket the
    user opened, before ``:`` of a weight or ``|`` of an alternation the cursor is in, before
    ``<``, ``BREAK``, `` --`` and a line break. When ``finishing_word``, the rest of the
    current word comes first. Outside brackets a separator before any content is allowed
    ("portrait" -> ", highly detailed"), so the phrase is the next one rather than an
    empty one; inside brackets the user is writing one weighted item, so it ends there.
    """
    local: list[str] = []
    content = False
    index = 0
    if finishing_word:
        while index < len(generated) and is_word_part(generated[index]):
            index += 1
    innermost = brackets[-1:] if brackets else ""
    while index < len(generated):
        char = generated[index]
        if char == "\n":
            return index
        if char == "\\":
            index += 2
            continue
        if local:
            if char in CLOSERS:
                if CLOSERS[char] != local[-1]:
                    return index
                local.pop()
        else:
            if char in PHRASE_SEPARATORS and (content or brackets):
                return index
            if char == "<" or char in CLOSERS:
                return index
            if (char == ":" and innermost in "([" and innermost) or (
                char == "|" and innermost in "[{" and innermost
            ):
                return index
            if generated.startswith(" --", index) or (
                generated.startswith("--", index) and index == 0
            ):
                return index
            if _break_at(generated, index):
                return index
        if char in OPENERS:
            local.append(char)
        if is_word_char(char):
            content = True
        index += 1
    return None


def cut_unbalanced(text: str, brackets: str = "", allow_closing_outer: bool = False) -> str:
    """``text`` cut so it adds no unbalanced bracket: no stray closer, no opener left open.

    ``brackets`` are the openers already unclosed before ``text``; with ``allow_closing_outer``
    the text may close them (an expansion may finish the user's ``(masterpiece``).
    """
    outer = list(brackets)
    local: list[tuple[str, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in OPENERS:
            local.append((char, index))
        elif char in CLOSERS:
            if local and local[-1][0] == CLOSERS[char]:
                local.pop()
            elif not local and allow_closing_outer and outer and outer[-1] == CLOSERS[char]:
                outer.pop()
            else:
                return text[:index].rstrip()
        index += 1
    if local:
        return text[: local[0][1]].rstrip()
    return text


SEPARATOR = re.compile(r"[,;|\n]|\bBREAK\b")
_TAG = re.compile(r"<[^>]*>")
_WEIGHT = re.compile(r":\s*-?\d*\.?\d+")
_BRACKETS = re.compile(r"[()\[\]{}\\]")
_SPACES = re.compile(r"\s+")


def split_phrases(text: str) -> list[tuple[int, int]]:
    """Spans of the phrases in ``text``, split at separators at any bracket depth."""
    spans = []
    start = 0
    for match in SEPARATOR.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def normalize_phrase(phrase: str) -> str:
    """A phrase's words without markup, case or spacing: "(Best  Quality:1.2)" -> "best quality"."""
    phrase = _TAG.sub(" ", phrase)
    phrase = _WEIGHT.sub(" ", phrase)
    phrase = _BRACKETS.sub(" ", phrase)
    phrase = _SPACES.sub(" ", phrase.casefold()).strip()
    return phrase.strip(" .:!?\"'")
