"""Settings validation: layers, precedence, and bad values that must not win."""

from __future__ import annotations

import pytest

from server.engine import EngineSettings
from server.settings import ServerSettings, build_settings


def test_defaults_when_nothing_is_given() -> None:
    validated = build_settings(None, None)
    assert validated.problems == ()
    assert validated.settings == ServerSettings()
    assert validated.settings.model == "default"
    assert validated.settings.engine == EngineSettings()


def test_a_client_with_ghost_text_gets_a_menu_of_alternatives_unless_it_says_otherwise() -> None:
    assert not build_settings(None, None).settings.engine.menu_skips_ghost
    assert build_settings(None, None, ghost_text=True).settings.engine.menu_skips_ghost
    chosen = build_settings({"menuSkipsGhost": False}, None, ghost_text=True)
    assert not chosen.settings.engine.menu_skips_ghost
    bad = build_settings(None, {"menuSkipsGhost": "yes"}, ghost_text=True)
    assert bad.settings.engine.menu_skips_ghost and "menuSkipsGhost" in bad.problems[0]


def test_every_key_is_read() -> None:
    raw = {
        "model": " hf:someone/model@v1 ",
        "maxItems": 3,
        "temperature": 0.5,
        "maxExpansionTokens": 40,
        "blocklist": ["nsfw", "/bad\\w+/"],
        "safeMode": False,
        "languageIds": ["prompt"],
        "filePatterns": ["*.txt"],
        "threads": 2,
        "timeBudgetMs": 1500,
        "corpusStatistics": False,
        "menuSkipsGhost": True,
    }
    validated = build_settings(raw, None)
    assert validated.problems == ()
    settings = validated.settings
    assert settings.model == "hf:someone/model@v1"
    assert settings.threads == 2
    assert settings.language_ids == ("prompt",)
    assert settings.file_patterns == ("*.txt",)
    assert settings.engine.max_items == 3
    assert settings.engine.temperature == 0.5
    assert settings.engine.max_expansion_tokens == 40
    assert settings.engine.blocklist == ("nsfw", "/bad\\w+/")
    assert settings.engine.safe_mode is False
    assert settings.engine.time_budget_ms == 1500
    assert settings.engine.corpus_statistics is False
    assert settings.engine.menu_skips_ghost is True


def test_configuration_beats_initialization_options_beats_defaults() -> None:
    validated = build_settings({"maxItems": 3, "temperature": 0.3}, {"maxItems": 5})
    assert validated.settings.engine.max_items == 5
    assert validated.settings.engine.temperature == 0.3
    assert validated.settings.engine.max_expansion_tokens == EngineSettings().max_expansion_tokens


def test_section_wrapper_is_accepted() -> None:
    validated = build_settings({"promptAutocomplete": {"maxItems": 2}}, None)
    assert validated.problems == ()
    assert validated.settings.engine.max_items == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("maxItems", 0),
        ("maxItems", "8"),
        ("maxItems", True),
        ("maxItems", 2.5),
        ("temperature", -1),
        ("temperature", 0),
        ("temperature", float("nan")),
        ("temperature", "hot"),
        ("maxExpansionTokens", 100_000),
        ("blocklist", "nsfw"),
        ("blocklist", ["ok", 3]),
        ("blocklist", ["/unclosed(/"]),
        ("blocklist", [""]),
        ("safeMode", "yes"),
        ("corpusStatistics", 1),
        ("model", ""),
        ("model", 7),
        ("languageIds", "plaintext"),
        ("threads", -2),
        ("threads", False),
        ("timeBudgetMs", 0),
    ],
)
def test_a_bad_value_is_reported_and_the_default_kept(key: str, value: object) -> None:
    validated = build_settings({key: value}, None)
    assert len(validated.problems) == 1
    assert key in validated.problems[0]
    assert validated.settings == ServerSettings()


def test_a_bad_value_in_a_higher_layer_keeps_the_lower_layer() -> None:
    validated = build_settings({"maxItems": 4}, {"maxItems": -1, "temperature": 1.5})
    assert len(validated.problems) == 1
    assert validated.settings.engine.max_items == 4
    assert validated.settings.engine.temperature == 1.5


def test_unknown_keys_and_non_objects_are_reported() -> None:
    assert "colour" in build_settings({"colour": "red"}, None).problems[0]
    validated = build_settings(None, ["not", "an", "object"])
    assert "expected an object" in validated.problems[0]
    assert validated.settings == ServerSettings()


def test_zero_or_null_threads_mean_automatic() -> None:
    assert build_settings({"threads": 0}, None).settings.threads is None
    assert build_settings({"threads": None}, None).settings.threads is None


@pytest.mark.parametrize(
    ("language_id", "path", "served"),
    [
        ("plaintext", None, True),
        ("text", "/tmp/notes.txt", True),  # Neovim's and Emacs' id for *.txt
        ("markdown", "/tmp/notes.md", True),
        ("python", "/tmp/a.py", False),
        ("python", "/tmp/scene.prompt", True),
        (None, "/tmp/dir.prompt/a.py", False),
        (None, None, False),
    ],
)
def test_which_documents_are_served(
    language_id: str | None, path: str | None, served: bool
) -> None:
    assert ServerSettings().serves(language_id, path) is served
