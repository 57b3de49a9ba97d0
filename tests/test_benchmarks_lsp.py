"""The benchmark's timing driver (over the REPL's client) against a fake prompt-ls."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.ksr import evaluate
from benchmarks.lsp_driver import LoopThread, LspDriver, LspSystem, ghost_text, menu_items
from benchmarks.run import measure_server
from client_tui.lsp import Edit

TARGET = "a 🐱 cat on a mat"  # the cat is 2 UTF-16 code units

FAKE_SERVER = """
from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("fake-prompt-ls", "1")


def line(ls, params):
    return ls.workspace.get_text_document(params.text_document.uri).source


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
def inline(ls, params):
    if line(ls, params) != "a \\U0001F431 c":
        return None
    cursor = params.position
    word = types.Range(start=types.Position(line=0, character=cursor.character - 1), end=cursor)
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text="cat on a", range=word)])


@server.feature(types.TEXT_DOCUMENT_COMPLETION)
def complete(ls, params):
    if not line(ls, params).endswith(" "):
        return []
    here = types.Range(start=params.position, end=params.position)
    return types.CompletionList(is_incomplete=True, items=[
        types.CompletionItem(label="mop", sort_text="1", text_edit=types.TextEdit(here, "mop")),
        types.CompletionItem(label="mat", sort_text="0", text_edit=types.TextEdit(here, "mat")),
    ])


STATUS_CALLS = []


@server.feature("promptAutocomplete/status")
def status(ls, params):
    STATUS_CALLS.append(1)  # the model is "ready" from the third question on
    return {"state": "ready" if len(STATUS_CALLS) >= 3 else "loading", "asked": len(STATUS_CALLS)}


server.start_io()
"""


def test_edits_become_ghost_and_menu() -> None:
    text = "a 🐱 c"
    assert ghost_text(text, [Edit(4, 5, "cat on a")]) == "at on a"
    assert ghost_text(text, [Edit(0, 1, "b")]) == ""  # rewrites typed text: no ghost
    assert ghost_text(text, []) == ""
    assert menu_items(text, [Edit(4, 5, "cat"), Edit(4, 5, "cow")]) == [(4, "cat"), (4, "cow")]


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[tuple[LspDriver, LoopThread]]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER, encoding="utf-8")
    runner = LoopThread()
    driver = LspDriver([sys.executable, str(script)], log_path=tmp_path / "stderr.log")
    try:
        yield driver, runner
    finally:
        runner.run(driver.stop(), timeout=30)
        runner.close()


def test_ksr_cold_start_and_memory_through_a_server(
    fake_server: tuple[LspDriver, LoopThread],
) -> None:
    driver, runner = fake_server
    initialize = runner.run(driver.start(), timeout=60)
    first = runner.run(driver.first_completion_seconds("a 🐱 cat on a "), timeout=60)
    assert 0 < initialize <= first
    # Type "a", " ", cat, " ", "c" (5); Tab takes the inline "at on a" (6); type " " (7);
    # menu item 1 "mat" by sort order (8); the menus offered after the earlier spaces do not
    # fit the target. 8 keystrokes for 16 characters: KSR 0.5.
    result = evaluate(LspSystem(driver, runner, "fake"), [TARGET])
    assert result.keystrokes == 8
    assert result.ksr == pytest.approx(0.5)
    assert len(driver.latencies["inline"]) == 8
    assert driver.peak_rss_bytes() > 0


def test_the_simulation_waits_for_the_model_to_be_ready(
    fake_server: tuple[LspDriver, LoopThread],
) -> None:
    driver, runner = fake_server
    runner.run(driver.start(), timeout=60)
    runner.run(driver.wait_until_serving(timeout=30), timeout=60)
    assert driver.client.model_state == "ready"  # the fake says so from its third answer
    assert runner.run(driver.client.status(), timeout=30)["asked"] >= 4


def test_latency_run_types_every_character(tmp_path: Path) -> None:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER, encoding="utf-8")
    result = asyncio.run(
        measure_server(
            [sys.executable, str(script)], [TARGET, "a b"], cold_text="a ", cold_starts=2
        )
    )
    assert len(result["cold_starts_s"]) == 2  # one spawn only for the cold start, one typed
    assert len(result["cold_start_load_average"]) == 2  # what each spawn competed with
    assert len(result["typing_load_average"]) == 2
    assert result["requests"] == {"completion": 19, "inline": 19}
    # The fake server reports no loading progress: every keystroke finds it ready.
    assert result["requests_by_phase"] == {"loading": 0, "ready": 19}
    assert set(result["latency_by_phase_ms"]) == {"ready"}
    assert result["typed"][:3] == ["a", "a ", "a 🐱"]
    assert 0 < result["initialize_s"] <= result["first_completion_s"]
    assert result["peak_rss_mb"] > 0
    assert set(result["latency_ms"]["inline"]) == {"p50", "p95", "p99"}
