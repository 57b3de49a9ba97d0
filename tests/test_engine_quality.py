"""Quality a user expects from the default model (not invariants: these need a trained model).

They run against ``model_store/default_model`` (or the directory in ``ENGINE_QUALITY_MODEL``).
While the default model is the tiny placeholder they are expected to fail (xfail, not
strict); once a trained model is embedded they must pass.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from server.engine import CompletionEngine, EngineSettings

pytestmark = pytest.mark.model_quality

SETTINGS = EngineSettings(time_budget_ms=60_000)


def _is_placeholder(path: Path) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("preset") == "tiny" or "PLACEHOLDER" in str(manifest.get("note", ""))


@pytest.fixture(scope="module")
def quality_model_dir(default_model_dir: Path) -> Path:
    override = os.environ.get("ENGINE_QUALITY_MODEL")
    return Path(override) if override else default_model_dir


@pytest.fixture(scope="module")
def engine(quality_model_dir: Path) -> CompletionEngine:
    return CompletionEngine.from_checkpoint(quality_model_dir, settings=SETTINGS, threads=1)


@pytest.fixture(autouse=True)
def _xfail_on_placeholder(quality_model_dir: Path, request: pytest.FixtureRequest) -> None:
    if _is_placeholder(quality_model_dir):
        request.applymarker(
            pytest.mark.xfail(
                reason="the default model is still the tiny placeholder", strict=False
            )
        )


def words_of(items) -> list[str]:
    return [item.new_text for item in items if item.kind == "word"]


def looks_like_a_phrase(text: str) -> bool:
    """A few ordinary words: letters, digits, hyphens, apostrophes; no repeats, no junk."""
    words = text.strip(" ,").split()
    return (
        1 <= len(words) <= 6
        and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9'-]*", word) for word in words)
        and len({word.lower() for word in words}) == len(words)
        and len(text.strip()) >= 3
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("woman portra", "portrait"),
        ("highly detai", "detailed"),
        ("digital pain", "painting"),
        ("trending on artst", "artstation"),
        ("(masterpi", "masterpiece"),
    ],
)
def test_common_words_are_in_the_top_three(
    engine: CompletionEngine, typed: str, expected: str
) -> None:
    assert expected in words_of(engine.complete(typed, len(typed)))[:3]


def test_ghost_text_after_a_separator_is_a_phrase(engine: CompletionEngine) -> None:
    ghost = engine.inline("woman portrait, ", 16)
    assert ghost and looks_like_a_phrase(ghost[0].new_text), ghost


def test_ghost_text_after_a_finished_phrase_adds_the_next_one(engine: CompletionEngine) -> None:
    ghost = engine.inline("woman portrait", 14)
    assert ghost and ghost[0].new_text.startswith((",", " ")), ghost
    assert looks_like_a_phrase(ghost[0].new_text.lstrip(", ")), ghost


def test_expansions_are_several_different_detailed_prompts(engine: CompletionEngine) -> None:
    results = engine.expand("a castle on a hill", 4)
    assert len(set(results)) == 4
    for result in results:
        assert result.startswith("a castle on a hill")
        assert result.count(",") >= 2, result
