"""PromptServerClient (the REPL's LSP wrapper) against a real prompt-ls, and its failure paths."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client_tui.lsp import (
    PromptServerClient,
    ServerState,
    ServerUnavailable,
    StaleRequest,
)
from tests.repl_support import WAIT_S, make_client, server_env, wait_until_loaded

IDEA = "woman portrait"


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PromptServerClient]:
    client = make_client(tmp_path_factory.mktemp("home"))
    await asyncio.wait_for(client.start(), WAIT_S)
    await wait_until_loaded(client)
    yield client
    await client.stop()


async def test_loading_progress_was_reported_and_then_ready(client: PromptServerClient) -> None:
    assert client.progress_seen
    assert all(progress.done for progress in client.progress.values())
    assert client.state is ServerState.RUNNING
    assert client.status_text() == "ready"
    assert client.server_info.startswith("prompt-ls")


async def test_ready_means_the_model_serves_and_the_toolbar_says_loading_until_then(
    tmp_path: Path,
) -> None:
    client = make_client(tmp_path)
    await asyncio.wait_for(client.start(), WAIT_S)
    try:
        assert client.status_text().startswith("loading the model")  # before any $/progress
        await client.wait_until_ready(WAIT_S)
        assert (await client.status())["state"] == "ready"
        assert client.status_text() == "ready"
    finally:
        await client.stop()


async def test_diagnostics_are_taken_quietly(
    client: PromptServerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    text = "red cat, " * 40  # past the 75-token limit: the server publishes a diagnostic
    await client.complete(text, len(text))
    await asyncio.sleep(0.5)
    assert [r for r in caplog.records if "publishDiagnostics" in r.getMessage()] == []


async def test_inline_edits_end_at_the_cursor(client: PromptServerClient) -> None:
    automatic = await client.inline(IDEA, len(IDEA))
    invoked = await client.inline(IDEA, len(IDEA), invoked=True)
    assert len(automatic) <= 1
    assert invoked, "an explicit request offers alternatives"
    for edit in automatic + invoked:
        assert 0 <= edit.start <= len(IDEA) and edit.end == len(IDEA)
        assert edit.new_text


async def test_positions_count_utf16_code_units(client: PromptServerClient) -> None:
    # The emoji is one Python character but two UTF-16 units: a client sending Python indices
    # would put the server's cursor one character early and get edits that end before ours.
    text = "🙂🙂 woman portra"
    edits = await client.inline(text, len(text), invoked=True)
    edits += await client.complete(text, len(text))
    assert edits
    for edit in edits:
        assert edit.end == len(text)
        assert 2 <= edit.start <= len(text)  # never inside or before the emoji pair


async def test_completion_items_come_sorted_with_their_spans(client: PromptServerClient) -> None:
    text = IDEA + " "
    edits = await client.complete(text, len(text))
    assert edits
    assert [e.sort_text for e in edits] == sorted(e.sort_text for e in edits)
    for edit in edits:
        assert edit.start <= len(text) and edit.label


async def test_expand_gives_at_most_n_full_prompts(client: PromptServerClient) -> None:
    expansions = await client.expand(IDEA, 3)
    assert 1 <= len(expansions) <= 3
    assert all(e.strip() for e in expansions)


async def test_a_request_for_text_that_changed_is_cancelled(client: PromptServerClient) -> None:
    cancels = client.cancels_sent
    request = asyncio.ensure_future(client.inline(IDEA, len(IDEA), invoked=True))
    await asyncio.sleep(0)  # the request is on the wire
    client.sync(IDEA + ", ")
    with pytest.raises(StaleRequest):
        await request
    assert client.cancels_sent == cancels + 1
    # The server is still answering, for the new text.
    assert await client.expand(IDEA + ", ", 1)


async def test_a_request_whose_caller_gives_up_is_cancelled(client: PromptServerClient) -> None:
    cancels = client.cancels_sent
    request = asyncio.ensure_future(client.expand(IDEA, 4))
    await asyncio.sleep(0)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert client.cancels_sent == cancels + 1


async def test_requests_before_start_say_the_server_is_unavailable(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    with pytest.raises(ServerUnavailable):
        await client.inline(IDEA, len(IDEA))


async def test_a_server_that_dies_at_start_is_reported_with_its_last_words(
    tmp_path: Path,
) -> None:
    dying = [sys.executable, "-c", "import sys; sys.stderr.write('no model here\\n'); sys.exit(3)"]
    client = PromptServerClient({}, command=dying, env=server_env(tmp_path))
    with pytest.raises(ServerUnavailable, match=r"exit code 3.*no model here"):
        await client.start()
    assert client.state is ServerState.FAILED
    await client.stop()


async def test_a_missing_server_program_is_reported(tmp_path: Path) -> None:
    client = PromptServerClient({}, command=[str(tmp_path / "no-such-prompt-ls")])
    with pytest.raises(ServerUnavailable, match="cannot start prompt-ls"):
        await client.start()
    await client.stop()


async def test_restart_replaces_the_server_and_keeps_the_document(
    client: PromptServerClient,
) -> None:
    # Last in this module: it costs a model load.
    text = IDEA + ", "
    client.sync(text)
    old_pid = client.server_pid
    await asyncio.wait_for(client.restart(), WAIT_S)
    assert client.server_pid != old_pid
    assert client.state is ServerState.RUNNING
    await wait_until_loaded(client)
    edits = await client.complete(text, len(text))  # answered against the re-opened text
    assert edits and all(edit.end == len(text) for edit in edits)
