"""The personal layer in the engine's word ranking (server/engine/personal_words.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store.ngram import counting
from model_store.personal import PersonalLayer, PersonalStore, Prompts
from model_store.personal_counts import count
from server.engine import CompletionEngine
from server.engine.personal_words import PERSONAL_HALF_COUNT, personal_share
from server.engine.types import EngineSettings

CORPUS = [
    "a cat on a mat, oil painting",
    "a cat on a mat, highly detailed",
    "portrait of a cat, oil painting",
]
# Modern-style prompts the corpus above never saw, and a negative prompt.
MINE = (
    "(masterpiece:1.2), 1girl, silver hair, starry sky",
    "(masterpiece:1.2), 1girl, silver hair, city lights",
)
NEGATIVE = ("lowres, bad anatomy, forbiddenword",)
SETTINGS = EngineSettings(time_budget_ms=60_000, safe_mode=False)


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PersonalLayer]:
    found = PersonalLayer(PersonalStore(tmp_path_factory.mktemp("personal") / "p.sqlite3"))
    found.learn(Prompts(MINE, NEGATIVE))
    assert found.wait_counted(60)
    yield found
    found.close()


@pytest.fixture(scope="module")
def engine(default_model_dir: Path, layer: PersonalLayer) -> CompletionEngine:
    return CompletionEngine.from_checkpoint(
        default_model_dir,
        settings=SETTINGS,
        threads=1,
        word_stats=counting.build(CORPUS),
        personal=layer,
    )


def ghost(engine: CompletionEngine, text: str) -> str:
    found = engine.inline(text, len(text))
    return found[0].new_text if found else ""


def menu(engine: CompletionEngine, text: str) -> list[str]:
    return [s.new_text.strip() for s in engine.complete(text, len(text)) if s.kind == "word"]


def test_the_users_phrasing_becomes_ghost_text(engine: CompletionEngine) -> None:
    engine.update_settings(SETTINGS)
    assert ghost(engine, "(masterpiece:1.2), 1gi").startswith("rl, silver hair,")


def test_without_personal_weight_the_corpus_ranks_alone(engine: CompletionEngine) -> None:
    engine.update_settings(
        EngineSettings(time_budget_ms=60_000, safe_mode=False, personal_weight=0)
    )
    try:
        assert "1girl," not in menu(engine, "(masterpiece:1.2), 1g")
    finally:
        engine.update_settings(SETTINGS)


def test_negative_prompts_are_completed_from_negative_statistics(
    engine: CompletionEngine,
) -> None:
    engine.update_settings(SETTINGS)
    assert "lowres," in menu(engine, "a cat\nNegative prompt: low")
    assert "lowres," not in menu(engine, "a cat, low")
    assert "1girl," not in menu(engine, "a cat\nNegative prompt: 1g")


def test_the_blocklist_applies_to_personal_words(engine: CompletionEngine) -> None:
    engine.update_settings(SETTINGS)
    assert "forbiddenword" in menu(engine, "Negative prompt: lowres, bad anatomy, forb")
    engine.update_settings(
        EngineSettings(time_budget_ms=60_000, safe_mode=False, blocklist=("forbiddenword",))
    )
    try:
        assert not any("forbidden" in w for w in menu(engine, "Negative prompt: lowres, forb"))
        assert "forbidden" not in ghost(engine, "Negative prompt: lowres, bad anatomy, ")
    finally:
        engine.update_settings(SETTINGS)


def test_the_personal_share_grows_with_how_often_the_context_was_written() -> None:
    stats = count(["a b c", "a b d", "x b e"])
    shares = [personal_share(stats, words, 0.6) for words in (["q"], ["x", "b"], ["a", "b"])]
    assert shares == sorted(shares) and shares[0] == 0 and shares[-1] < 0.6
    assert shares[1] == pytest.approx(0.6 * 1 / (1 + PERSONAL_HALF_COUNT))
    assert personal_share(stats, ["q", "b"], 0.6) == pytest.approx(
        0.6 * 3 / (3 + PERSONAL_HALF_COUNT)
    )


def test_a_prompt_in_another_style_is_left_to_the_corpus(
    engine: CompletionEngine, layer: PersonalLayer
) -> None:
    """How well the user's statistics predicted the words so far decides their share."""
    blender = engine._blender
    mine = layer.counts(negative=False)
    assert blender is not None and blender._personal is not None and mine is not None
    odds = blender._personal.style_odds
    theirs = odds(mine, ["(masterpiece:1.2),", "1girl,", "silver"])
    corpus_like = odds(mine, ["a", "cat", "on", "a", "mat,", "oil"])
    assert theirs > 0 > corpus_like
    assert odds(mine, []) == 0  # no evidence yet: even odds


# -- the LoRAs the user wrote ----------------------------------------------------------------

LORA_PROMPTS = (
    "1girl, smile <lora:add_detail:0.6>",
    "1girl, city <lora:add_detail:0.6> <lora:cityscape_v2:1>",
    "1boy, beach <lora:add_detail:0.4>,",
    "1boy, <lora:secretword_style:0.8>",
)


def items(engine: CompletionEngine, text: str) -> list[str]:
    return [text[: s.start] + s.new_text for s in engine.complete(text, len(text), limit=8)]


def test_the_loras_the_user_wrote_are_offered_most_used_first(
    default_model_dir: Path, tmp_path: Path
) -> None:
    mine = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3"))
    built = CompletionEngine.from_checkpoint(
        default_model_dir,
        settings=EngineSettings(time_budget_ms=60_000, blocklist=("secretword_style",)),
        threads=1,
        word_stats=counting.build(CORPUS),
        personal=mine,
    )
    try:
        # Nothing learned yet: "<" still offers the tag's opening.
        assert items(built, "a cat, <") == ["a cat, <lora:"]
        mine.learn(Prompts(LORA_PROMPTS))
        assert mine.wait_counted(60)
        # Most used first, stopping at the weight; the blocklist holds.
        assert items(built, "a cat, <lo") == [
            "a cat, <lora:",
            "a cat, <lora:add_detail:",
            "a cat, <lora:cityscape_v2:",
        ]
        assert items(built, "a cat, <lora:CIT") == ["a cat, <lora:cityscape_v2:"]
        # The weights the user gave it come first, most used first, then the usual ones.
        assert items(built, "<lora:add_detail:")[:3] == [
            "<lora:add_detail:0.6>",
            "<lora:add_detail:0.4>",
            "<lora:add_detail:1>",
        ]
        # Before a closing ">" none is added.
        found = built.complete("<lora:add_detail:>", len("<lora:add_detail:"))
        assert found[0].new_text == "0.6"
        # Forgotten prompts take their LoRAs with them; the one left is blocklisted.
        mine.forget("add_detail")
        assert mine.wait_counted(60)
        assert items(built, "<lora:") == []
        built.update_settings(EngineSettings(time_budget_ms=60_000))
        assert items(built, "<lora:") == ["<lora:secretword_style:"]
    finally:
        mine.close()
