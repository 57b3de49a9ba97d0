"""Helpers for end-to-end tests of prompt-ls over real LSP (pytest-lsp clients)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.conftest import subprocess_env

CLIENTS = ["neovim", "visual_studio_code"]
SERVER_COMMAND = [sys.executable, "-m", "server"]
STATUS = "promptAutocomplete/status"
EXPAND = "promptAutocomplete.expand"
READY_WAIT_S = 120.0  # bounds a broken test on a busy 2-core machine; not a speed assertion
# The engine stops decoding when its time budget runs out, so on a busy machine how many
# items come back would vary; tests that count items lift the budget.
NO_TIME_LIMIT = {"timeBudgetMs": 600_000}
POLL_S = 0.05


class Session:
    """A client connected to its own server process, and what initialisation negotiated."""

    def __init__(self, client: LanguageClient, result: types.InitializeResult) -> None:
        self.client = client
        self.result = result
        self.encoding = result.capabilities.position_encoding
        self.documents = Documents(client)

    def column(self, text: str) -> int:
        """The client column just after ``text`` at the start of a line."""
        return encode_column(text, self.encoding)


async def start_session(
    client_name: str,
    home: Path,
    initialization_options: Any = None,
    configuration: dict[str, Any] | None = None,
    command: Sequence[str] = SERVER_COMMAND,
) -> Session:
    """A server process (``command``) with its own model-store root, initialised as
    ``client_name``."""
    config = ClientServerConfig(
        server_command=list(command),
        # Offline hub: a test that went wrong must fail, not reach for the network.
        server_env=subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(home), HF_HUB_OFFLINE="1"),
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    if configuration is not None:
        client.set_configuration(configuration)
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(client_name),
            initialization_options=initialization_options,
        )
    )
    return Session(client, result)


async def end_session(session: Session) -> None:
    await session.client.shutdown_session()
    await session.client.stop()


def shared_session(**start_options: Any) -> Any:
    """A module's ``session`` fixture: one ready server per client kind, shared by the module's
    tests (starting one costs seconds); ``start_options`` are start_session's keywords.

    Assign it in the test module: ``session = shared_session(initialization_options=...)``.
    """

    @pytest_asyncio.fixture(scope="module", params=CLIENTS, name="session")
    async def session(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[Session]:
        started = await start_session(
            request.param, tmp_path_factory.mktemp("home"), **start_options
        )
        await wait_until_ready(started.client)
        yield started
        await end_session(started)

    return session


async def status(client: LanguageClient) -> dict[str, Any]:
    """The server's status; pygls hands untyped results over as namedtuples."""
    result = await client.protocol.send_request_async(STATUS, None)
    return dict(result._asdict())


async def wait_for_state(client: LanguageClient, *states: str) -> dict[str, Any]:
    """Poll the server's status until the model is in one of ``states``."""
    deadline = time.monotonic() + READY_WAIT_S
    while (current := await status(client))["state"] not in states:
        assert time.monotonic() < deadline, f"model never reached {states}; last {current}"
        await asyncio.sleep(POLL_S)
    return current


async def wait_until_ready(client: LanguageClient) -> None:
    current = await wait_for_state(client, "ready", "failed")
    assert current["state"] == "ready", current


def encode_column(text: str, encoding: str | None) -> int:
    """Code units of ``text`` in the negotiated position encoding (computed without pygls)."""
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8"))
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def split_line(line: str, span: types.Range, encoding: str | None) -> tuple[str, str, str]:
    """(before, inside, after) ``span`` of a one-line range, as a client with ``encoding``
    sees it; a column inside a character fails to decode, which is what tests should catch."""
    codec, width = {
        types.PositionEncodingKind.Utf8: ("utf-8", 1),
        types.PositionEncodingKind.Utf32: ("utf-32-le", 4),
    }.get(encoding, ("utf-16-le", 2))
    data = line.encode(codec)
    start, end = span.start.character * width, span.end.character * width
    return data[:start].decode(codec), data[start:end].decode(codec), data[end:].decode(codec)


class Documents:
    """Open and edit documents with increasing versions."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.versions: dict[str, int] = {}
        self.count = 0

    def open(self, text: str, language_id: str = "prompt", suffix: str = ".prompt") -> str:
        self.count += 1
        uri = f"file:///tmp/prompt-ls-test-{self.count}{suffix}"
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language_id, version=1, text=text
                )
            )
        )
        return uri

    def replace(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )


async def complete(
    client: LanguageClient, uri: str, line: int, character: int
) -> types.CompletionList:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
        )
    )
    assert isinstance(result, types.CompletionList)
    return result


async def inline(
    client: LanguageClient,
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind,
) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    return result


async def expand(client: LanguageClient, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=EXPAND, arguments=list(arguments))
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; for effects of notifications, which have no reply."""
    deadline = time.monotonic() + READY_WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(POLL_S)


async def message_containing(client: LanguageClient, text: str) -> types.ShowMessageParams:
    """The first window/showMessage whose text contains ``text`` (waiting for it)."""

    async def arrived() -> bool:
        return any(text in message.message for message in client.messages)

    await eventually(arrived, f"a showMessage containing {text!r}")
    return next(message for message in client.messages if text in message.message)
