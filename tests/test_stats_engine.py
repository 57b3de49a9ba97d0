"""Serving from the corpus statistics alone, before torch loads (server/engine/stats_engine.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model_store.ngram import counting
from model_store.personal import PersonalLayer, PersonalStore, Prompts
from server.engine.stats_engine import StatisticsEngine
from server.engine.types import EngineSettings
from tests.test_engine_blend import CORPUS

SETTINGS = EngineSettings(safe_mode=False)


@pytest.fixture(scope="module")
def engine() -> StatisticsEngine:
    return StatisticsEngine(counting.build(CORPUS), SETTINGS)


def test_words_and_ghost_text_come_from_the_statistics(engine: StatisticsEngine) -> None:
    menu = engine.complete("a ca", 4)
    assert menu[0].new_text == "cat " and (menu[0].start, menu[0].end) == (2, 4)
    assert "cathedral " in [item.new_text for item in menu]
    ghost = engine.inline("a ca", 4)
    assert ghost and ghost[0].new_text.startswith("t on a mat")
    assert engine.expand("a cat", 2) == []  # expansions are the LM's


def test_the_users_own_words_serve_before_torch_too(tmp_path: Path) -> None:
    layer = PersonalLayer(PersonalStore(tmp_path / "p.sqlite3"))
    try:
        layer.learn(Prompts(("a cat, 1girl, silver hair", "a cat, 1girl, city lights")))
        assert layer.wait_counted(60)
        found = StatisticsEngine(counting.build(CORPUS), SETTINGS, personal=layer)
        assert found.inline("a cat, 1g", 9)[0].new_text.startswith("irl,")
        alone = StatisticsEngine(counting.build(CORPUS), SETTINGS).inline("a cat, 1g", 9)
        assert not any(item.new_text.startswith("irl") for item in alone)
    finally:
        layer.close()


def test_settings_apply_as_in_the_full_engine(engine: StatisticsEngine) -> None:
    engine.update_settings(EngineSettings(safe_mode=False, blocklist=("cat",)))
    assert "cat " not in [item.new_text for item in engine.complete("a ca", 4)]
    engine.update_settings(EngineSettings(safe_mode=False, corpus_statistics=False))
    assert engine.complete("a ca", 4) == [] and engine.inline("a ca", 4) == []
    with pytest.raises(ValueError, match="max_items"):
        engine.update_settings(EngineSettings(max_items=0))
    engine.update_settings(SETTINGS)
    assert engine.complete("--a", 3)  # fixed options still come
    assert engine.inline("a cat <lora:", 12) == []


def test_the_statistics_serve_without_importing_torch() -> None:
    """What the server runs before the model loads must not pull torch in (seconds)."""
    code = (
        "import sys\n"
        "from model_store.ngram import counting\n"
        "from server.engine.stats_engine import StatisticsEngine\n"
        "import server.worker\n"
        f"engine = StatisticsEngine(counting.build({CORPUS!r}))\n"
        "assert engine.complete('a ca', 4)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
