"""Keystroke-savings simulation: a person types a target prompt with a completion system's help.

The protocol (pure logic, no I/O): at every state the typed text ``x`` is a prefix of the target
``T``. The system shows ghost text ``g`` and up to ``MENU_SIZE`` menu items, each meaning
"replace ``x[start:]`` with ``new_text``". Costs: one character typed 1; all of ``g`` 1 (Tab);
the first ``k`` words of ``g`` ``k`` (a word as IPython's accept-word takes it); menu item ``j``
(1-based) ``j``. An option counts only if the text it produces is a prefix of ``T``
(case-sensitive) and longer than ``x``. The person takes the option with the largest
(characters gained - cost) when that is positive, else types the next character.
KSR = 1 - keystrokes / characters, summed over all targets.

Ties keep the first option in the order Tab, word-by-word (k ascending), menu (j ascending).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

MENU_SIZE = 5
_WORD_PIECE = re.compile(r"(\S+\s+)")

MenuItem = tuple[int, str]
OptionKind = Literal["ghost", "ghost-words", "menu"]


class System(Protocol):
    """Something that proposes completions for the typed text (cursor at its end)."""

    name: str

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        """Ghost text to append, and menu items (start, new_text) = typed[:start] + new_text."""
        ...


def ghost_words(ghost: str) -> list[str]:
    """The pieces IPython's accept-word takes one by one; a leading space run is a piece."""
    return [piece for piece in _WORD_PIECE.split(ghost) if piece]


@dataclass(frozen=True)
class Option:
    """One way to accept a suggestion: the text it produces and its cost in keystrokes."""

    kind: OptionKind
    result: str
    cost: int


def options(
    typed: str, ghost: str, menu: Sequence[MenuItem], use_menu: bool = True
) -> list[Option]:
    """Every acceptance the person could make at this state, valid or not, in tie-break order."""
    found: list[Option] = []
    if ghost:
        found.append(Option("ghost", typed + ghost, 1))
        accepted = typed
        for k, piece in enumerate(ghost_words(ghost), start=1):
            accepted += piece
            found.append(Option("ghost-words", accepted, k))
    if use_menu:
        for j, (start, new_text) in enumerate(menu[:MENU_SIZE], start=1):
            if not 0 <= start <= len(typed):
                raise ValueError(f"menu item start {start} outside the typed text {typed!r}")
            found.append(Option("menu", typed[:start] + new_text, j))
    return found


def best_option(target: str, typed: str, candidates: Iterable[Option]) -> Option | None:
    """The option with the largest positive (gain - cost) that keeps the text a prefix of target."""
    best: Option | None = None
    best_net = 0
    for option in candidates:
        gained = len(option.result) - len(typed)
        if gained <= 0 or not target.startswith(option.result):
            continue
        net = gained - option.cost
        if net > best_net:
            best, best_net = option, net
    return best


@dataclass
class KsrResult:
    """Totals over a set of targets; latencies are seconds per real ``suggest`` call."""

    characters: int = 0
    keystrokes: int = 0
    acceptances: dict[str, int] = field(
        default_factory=lambda: {"ghost": 0, "ghost-words": 0, "menu": 0}
    )
    accepted_characters: int = 0
    per_prompt: list[tuple[int, int]] = field(default_factory=list)  # (characters, keystrokes)

    @property
    def ksr(self) -> float:
        return 1.0 - self.keystrokes / self.characters if self.characters else 0.0

    @property
    def total_acceptances(self) -> int:
        return sum(self.acceptances.values())

    @property
    def chars_per_acceptance(self) -> float:
        total = self.total_acceptances
        return self.accepted_characters / total if total else 0.0


def simulate(
    suggest: Callable[[str], tuple[str, list[MenuItem]]],
    target: str,
    result: KsrResult,
    use_menu: bool = True,
) -> None:
    """Type ``target`` from an empty line, adding keystrokes and acceptances to ``result``."""
    typed = ""
    keystrokes_before = result.keystrokes
    result.characters += len(target)
    while typed != target:
        ghost, menu = suggest(typed)
        option = best_option(target, typed, options(typed, ghost, menu, use_menu))
        if option is None:
            typed = target[: len(typed) + 1]
            result.keystrokes += 1
            continue
        result.keystrokes += option.cost
        result.acceptances[option.kind] += 1
        result.accepted_characters += len(option.result) - len(typed)
        typed = option.result
    result.per_prompt.append((len(target), result.keystrokes - keystrokes_before))


class MemoSystem:
    """Caches a deterministic system's answers per typed text and times the real calls.

    The ghost-only and ghost+menu runs visit many of the same states; the cache lets the
    second run reuse them, which matters for slow model-backed systems.
    """

    def __init__(self, system: System) -> None:
        self.system = system
        self.name = system.name
        self.latencies: list[float] = []
        self._answers: dict[str, tuple[str, list[MenuItem]]] = {}

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        answer = self._answers.get(typed)
        if answer is None:
            began = time.perf_counter()
            answer = self.system.suggest(typed)
            self.latencies.append(time.perf_counter() - began)
            self._answers[typed] = answer
        return answer


def evaluate(
    system: System,
    targets: Sequence[str],
    use_menu: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> KsrResult:
    """KSR of ``system`` over ``targets``."""
    result = KsrResult()
    for done, target in enumerate(targets, start=1):
        simulate(system.suggest, target, result, use_menu)
        if progress is not None:
            progress(done, len(targets))
    return result
