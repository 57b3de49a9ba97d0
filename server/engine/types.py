"""Plain data passed between the completion engine and its callers (no LSP types here)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

# "tag": a tag, LoRA, embedding or wildcard name (vocabulary.py); it may replace an alias.
SuggestionKind = Literal["word", "phrase", "expansion", "fill", "tag"]


class Cancelled(Exception):
    """Raised inside the engine when the caller's stop flag was set between decoding steps."""


class Budget:
    """A request's deadline and stop flag, checked between decoding steps."""

    def __init__(self, milliseconds: float, stop: threading.Event | None) -> None:
        self.deadline = time.monotonic() + milliseconds / 1000
        self.stop = stop

    def check(self) -> None:
        """Raise Cancelled if the caller set the stop flag."""
        if self.stop is not None and self.stop.is_set():
            raise Cancelled

    def left(self) -> bool:
        """Raise Cancelled when stopped; otherwise say whether time remains."""
        self.check()
        return time.monotonic() < self.deadline


@dataclass(frozen=True)
class Suggestion:
    """Replace ``text[start:end]`` with ``new_text``; offsets are Python string indices."""

    kind: SuggestionKind
    start: int
    end: int
    new_text: str
    score: float  # length-normalised log-probability: higher is better
    label: str = ""  # what the menu shows, when not the new text ("1girls → 1girl")
    detail: str = ""  # what it is, when more than its kind ("general tag · 6,008,644 posts")


# The tag packs shipped in server/engine/data/tags (tags.py reads them).
TAG_PACKS = ("danbooru",)


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
    # have often written the words before it (personal_words.personal_share; tuned on modern-style
    # prompts, docs/BENCHMARKS.md); 0 turns the personal layer off.
    personal_weight: float = 0.9
    # The client shows ghost text beside the menu: the menu leaves out the ghost's next word
    # and offers alternatives to it (blended word items only; the ghost is one keystroke away).
    menu_skips_ghost: bool = False
    tag_packs: tuple[str, ...] = TAG_PACKS  # tag packs offered as words
    tag_underscores: bool = False  # insert tags as "long_hair" rather than "long hair"
    lora_dirs: tuple[str, ...] = ()  # folders of LoRA files, offered after "<lora:"
    embedding_dirs: tuple[str, ...] = ()  # folders of textual-inversion embeddings
    wildcard_dirs: tuple[str, ...] = ()  # folders of wildcard .txt files, offered as __name__
    seed: int = 0
