"""KSR adapter for the product's completion engine (``server.engine.CompletionEngine``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from benchmarks.ksr import MENU_SIZE, MenuItem


class Edit(Protocol):
    """What the engine's ``Suggestion`` carries that the benchmark needs."""

    start: int
    end: int
    new_text: str


class Engine(Protocol):
    def complete(self, text: str, cursor: int, *, limit: int | None = None) -> Sequence[Edit]: ...

    def inline(self, text: str, cursor: int) -> Sequence[Edit]: ...

    def expand(self, text: str, n: int = 4) -> list[str]: ...


def applied(typed: str, edit: Edit) -> str:
    """The whole line after replacing ``typed[start:end]`` with the edit's text."""
    if not 0 <= edit.start <= edit.end <= len(typed):
        raise ValueError(f"edit {edit.start}:{edit.end} outside the typed text {typed!r}")
    return typed[: edit.start] + edit.new_text + typed[edit.end :]


def ghost_of(typed: str, edit: Edit) -> str:
    """Ghost text an editor would show for an inline edit: what it appends to the typed text.

    An edit that does not extend the typed text (it rewrites something already typed) cannot
    be shown as ghost text at the cursor, so it shows nothing.
    """
    line = applied(typed, edit)
    return line[len(typed) :] if line.startswith(typed) else ""


def menu_item(typed: str, edit: Edit) -> MenuItem:
    """The edit as "replace ``typed[start:]``", folding any text after ``end`` into it."""
    return edit.start, applied(typed, edit)[edit.start :]


class EngineSystem:
    """ghost = the first ``inline`` suggestion, menu = ``complete(limit=5)``, cursor at the end."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.latencies: dict[str, list[float]] = {"completion": [], "inline": []}

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        cursor = len(typed)
        began = time.perf_counter()
        inline = self.engine.inline(typed, cursor)
        middle = time.perf_counter()
        complete = self.engine.complete(typed, cursor, limit=MENU_SIZE)
        self.latencies["inline"].append(middle - began)
        self.latencies["completion"].append(time.perf_counter() - middle)
        ghost = ghost_of(typed, inline[0]) if inline else ""
        return ghost, [menu_item(typed, s) for s in complete]
