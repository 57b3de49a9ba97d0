"""Expansion metrics on hand-made candidates, and the engine adapter on a fake engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import expansion
from benchmarks.engine_system import EngineSystem, ghost_of, menu_item
from benchmarks.ksr import evaluate


def test_idea_kept_counts_words_not_case_or_punctuation() -> None:
    assert expansion.idea_kept("red car", "a red bus") == 0.5
    assert expansion.idea_kept("Red car", "a red, shiny car!") == 1.0


def test_distinct_2_pools_the_candidates_of_one_idea() -> None:
    # bigrams (a b) (b c) (a b) (b d): 3 distinct of 4.
    assert expansion.distinct_2(["a b c", "a b d"]) == 0.75
    assert expansion.distinct_2(["a", "b"]) == 0.0


def test_repeated_phrases() -> None:
    assert expansion.has_repeated_phrase("cat, dog, Cat")
    assert expansion.has_repeated_phrase("one two three and one two three")
    assert not expansion.has_repeated_phrase("a cat, a dog, a bird")


def test_generated_phrases_are_those_ending_after_the_idea() -> None:
    idea = "a red car"
    assert expansion.generated_phrases(idea, "a red car in the rain, Night, ") == [
        "a red car in the rain",
        "night",
    ]
    # "shiny" ends where the idea ends, so it is the user's phrase; "shiny car" would count.
    assert expansion.generated_phrases("a red car, shiny", "a red car, shiny, 8k") == ["8k"]
    assert expansion.generated_phrases("a red car, shiny", "a red car, shiny car") == ["shiny car"]
    assert expansion.generated_phrases(idea, "a blue car, 8k") == ["a blue car", "8k"]


def test_phrase_set_membership_is_lower_cased_and_stripped() -> None:
    phrases = expansion.PhraseSet.build(["A cat, Highly detailed ", "dog"])
    assert "highly detailed" in phrases
    assert "a cat" in phrases and "dog" in phrases
    assert "cat" not in phrases


def test_phrase_set_cache(tmp_path: Path) -> None:
    first = expansion.PhraseSet.cached(["a, b"], "0" * 64, tmp_path)
    again = expansion.PhraseSet.cached(["other"], "0" * 64, tmp_path)
    assert list(again.hashes) == list(first.hashes)


def test_scores_by_hand() -> None:
    phrases = expansion.PhraseSet.build(["highly detailed, 8k", "oil painting"])
    produced = [
        # kept 1, 1. Generated phrases: ["highly detailed"] ("red car" ends where the idea
        # ends), then ["red car in rain", "8k", "8k"] (a repeated phrase).
        ("red car", ["red car, highly detailed", "red car in rain, 8k, 8k"]),
        # kept 0.5 and 0 (a rewrite); generated: ["a cat"], ["oil painting"]; "blue" = idea.
        ("blue cat", ["a cat", "oil painting"]),
    ]
    scores = expansion.score(produced, phrases)
    assert scores.candidates == 4
    assert scores.idea_kept == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert scores.repeated_phrase == pytest.approx(1 / 4)
    # known: "highly detailed", "8k", "8k", "oil painting" = 4 of 6 generated phrases
    assert scores.prompt_likeness == pytest.approx(4 / 6)
    assert scores.empty == 0


def test_ideas_are_2_to_4_leading_words_distinct_and_seeded() -> None:
    lines = [f"word{i} second third fourth fifth, more" for i in range(50)] + ["too short"]
    ideas = expansion.ideas_from(lines, 20)
    assert ideas == expansion.ideas_from(lines, 20)
    assert len(ideas) == len(set(ideas)) == 20
    for idea in ideas:
        assert 2 <= len(idea.split()) <= 4
        assert any(line.startswith(idea) for line in lines)


@dataclass(frozen=True)
class Edit:
    kind: str
    start: int
    end: int
    new_text: str
    score: float = 0.0


class FakeEngine:
    """Completes "a red c" only; the inline edit rewrites the partial word (start < end)."""

    def inline(self, text: str, cursor: int) -> list[Edit]:
        if text == "a red c":
            return [Edit("phrase", 6, 7, "car in rain")]
        return []

    def complete(self, text: str, cursor: int, *, limit: int | None = None) -> list[Edit]:
        if text == "a red c":
            return [Edit("word", 6, 7, "cat"), Edit("word", 6, 7, "car")][:limit]
        return []

    def expand(self, text: str, n: int = 4) -> list[str]:
        return [text] * n


def test_engine_edits_become_ghost_and_menu() -> None:
    typed = "a red c"
    assert ghost_of(typed, Edit("phrase", 6, 7, "car in rain")) == "ar in rain"
    assert ghost_of(typed, Edit("phrase", 2, 7, "blue car")) == ""  # rewrites typed text
    assert menu_item(typed, Edit("word", 6, 7, "cat")) == (6, "cat")
    assert menu_item("a red cx", Edit("word", 6, 7, "cat")) == (6, "catx")
    with pytest.raises(ValueError, match="outside"):
        ghost_of(typed, Edit("word", 6, 9, "x"))


def test_engine_system_ksr_by_hand() -> None:
    # Target "a red car" (9): 7 characters typed, then item 2 "car" gains 2 for 2 (net 0)
    # while the ghost's first piece "ar " is not a prefix and "ar in rain" overshoots:
    # type "a" and "r" -> 9 keystrokes, KSR 0. Target "a red car in rain" (17): 7 typed, Tab
    # gains 10 -> 8 keystrokes, KSR 1 - 8/17.
    system = EngineSystem(FakeEngine(), "fake")
    assert evaluate(system, ["a red car"]).ksr == 0
    assert evaluate(system, ["a red car in rain"]).ksr == pytest.approx(1 - 8 / 17)
    assert len(system.latencies["inline"]) == len(system.latencies["completion"]) > 0
