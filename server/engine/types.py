"""Plain data passed between the completion engine and its callers (no LSP types here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SuggestionKind = Literal["word", "phrase", "expansion", "fill"]


class Cancelled(Exception):
    """Raised inside the engine when the caller's stop flag was set between decoding steps."""


@dataclass(frozen=True)
class Suggestion:
    """Replace ``text[start:end]`` with ``new_text``; offsets are Python string indices."""

    kind: SuggestionKind
    start: int
    end: int
    new_text: str
    score: float  # length-normalised log-probability: higher is better


@dataclass(frozen=True)
class EngineSettings:
    """What a user may configure; the server validates raw settings into this."""

    max_items: int = 8
    temperature: float = 0.8
    max_expansion_tokens: int = 60
    blocklist: tuple[str, ...] = ()  # words, or regexes written as /.../
    safe_mode: bool = True
    time_budget_ms: int = 400
    corpus_statistics: bool = True  # blend word statistics in, when the engine has them
    blend_weight: float = 0.3  # the LM's share in the blend (blend.py); 0: the corpus alone
    # Once this many letters of a word are typed, the corpus ranks the words that finish it
    # alone (None: the LM rescores at every letter): the few words left share a long prefix,
    # the LM's rescoring did not change the keystroke savings on tuning prompts, and it was
    # most of a keystroke's time.
    blend_lm_letters: int | None = 4
    # The user's own statistics take up to this share of a word's probability, where they
    # have often written the words before it (blend.personal_share; tuned on modern-style
    # prompts, docs/BENCHMARKS.md); 0 turns the personal layer off.
    personal_weight: float = 0.9
    # The client shows ghost text beside the menu: the menu leaves out the ghost's next word
    # and offers alternatives to it (blended word items only; the ghost is one keystroke away).
    menu_skips_ghost: bool = False
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)
