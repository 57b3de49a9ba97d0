"""Bad input must never kill the server: after each case it still answers normally."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcMethodNotFound
from pytest_lsp import LanguageClient

from tests.server_support import (
    CLIENTS,
    NO_TIME_LIMIT,
    READY_WAIT_S,
    Documents,
    Session,
    complete,
    end_session,
    start_session,
    status,
    wait_until_ready,
)


@pytest_asyncio.fixture(scope="module", params=CLIENTS)
async def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Session]:
    started = await start_session(
        request.param, tmp_path_factory.mktemp("home"), initialization_options=NO_TIME_LIMIT
    )
    await wait_until_ready(started.client)
    yield started
    await end_session(started)


@pytest.fixture()
def client(session: Session) -> LanguageClient:
    return session.client


async def still_serving(client: LanguageClient) -> None:
    """The server is alive and its model answers a real completion."""
    assert (await status(client))["state"] == "ready"
    uri = Documents(client).open("a portrait of a woman, ")
    assert (await complete(client, uri, 0, 23)).items


async def send_raw(client: LanguageClient, payload: bytes) -> None:
    """Bytes straight onto the server's stdin, bypassing the client's serializer."""
    written = client.protocol.writer.write(payload)
    if inspect.isawaitable(written):
        await written


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize(
    "payload",
    [
        framed(b'{"jsonrpc": "2.0", "id": 9001, "method": "textDoc'),  # cut-off JSON
        framed(b"[1, 2, 3]"),  # JSON, but not a message
        framed(b'{"jsonrpc": "1.0", "id": 9002, "method": "shutdown"}'),  # wrong version
        framed('{"jsonrpc": "2.0", "method": "\udcff"}'.encode("utf-8", "surrogatepass")),
        b"Content-Length: banana\r\n\r\n",  # a header that is not a length
        framed(b'{"jsonrpc": "2.0", "method": "$/unknownNotification", "params": {}}'),
    ],
    ids=["truncated", "array", "version", "bad-utf8", "header", "unknown-notification"],
)
async def test_garbage_on_the_wire(client: LanguageClient, payload: bytes) -> None:
    await send_raw(client, payload)
    await still_serving(client)


async def test_a_request_with_unreadable_params_is_answered_invalid_params(
    client: LanguageClient,
) -> None:
    # The typed client cannot send such params, so the request goes out raw and its answer
    # is awaited through the client's table of pending requests.
    answer = asyncio.get_running_loop().create_future()
    client.protocol._request_futures["unreadable-params"] = answer
    request = {
        "jsonrpc": "2.0",
        "id": "unreadable-params",
        "method": types.TEXT_DOCUMENT_COMPLETION,
        "params": {"textDocument": 5, "position": {"line": -1}},
    }
    await send_raw(client, framed(json.dumps(request).encode()))
    with pytest.raises(JsonRpcInvalidParams):
        await asyncio.wait_for(answer, READY_WAIT_S)
    await still_serving(client)


async def test_an_unknown_method_is_method_not_found(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcMethodNotFound):
        await client.protocol.send_request_async("promptAutocomplete/noSuchThing", {})
    await still_serving(client)


async def test_a_document_that_was_never_opened_gets_nothing(client: LanguageClient) -> None:
    result = await complete(client, "file:///nowhere/never-opened.prompt", 0, 0)
    assert len(result.items) == 0
    await still_serving(client)


@pytest.mark.parametrize(
    ("line", "character"), [(0, 10_000), (50, 0), (2_000_000_000, 2_000_000_000)]
)
async def test_out_of_range_positions_are_clamped(
    client: LanguageClient, line: int, character: int
) -> None:
    text = "first line\na castle on a hill, "
    uri = Documents(client).open(text)
    result = await complete(client, uri, line, character)
    expected_line = 0 if line == 0 else 1
    expected_end = len(text.splitlines()[expected_line])
    for item in result.items:
        assert item.text_edit.range.end == types.Position(
            line=expected_line, character=expected_end
        )
    await still_serving(client)


async def test_a_huge_document(client: LanguageClient) -> None:
    long_line = "masterpiece, best quality, " * 40_000  # about 1 MB on one line
    text = "\n".join(["a castle on a hill"] * 20_000) + "\n" + long_line
    uri = Documents(client).open(text)
    last = len(text.splitlines()) - 1
    result = await complete(client, uri, last, len(long_line))
    assert result.is_incomplete
    for item in result.items:
        assert item.text_edit.range.end == types.Position(line=last, character=len(long_line))
    await still_serving(client)


@pytest.mark.parametrize(
    "line",
    [
        "🧙‍♂️ wizard, 🔥🔥 fire, ",
        "\U0001d557\U0001d552\U0001d55f\U0001d554\U0001d56a text ",  # math letters
        "e\u0301\u0302\u0303\u0304 zalgo ",
        "right-to-left \u202e\u05d8\u05e7\u05e1\u05d8\u202c ",
        "\ufeffbom and \u200bzero width ",
    ],
)
async def test_odd_unicode(session: Session, line: str) -> None:
    uri = session.documents.open(line)
    result = await complete(session.client, uri, 0, session.column(line))
    for item in result.items:
        assert item.text_edit.range.end.character == session.column(line)
    await still_serving(session.client)


async def test_a_lone_surrogate_from_the_client(client: LanguageClient) -> None:
    # Python's json writes a lone surrogate as the escape \ud83d, as a buggy client might.
    uri = Documents(client).open("broken \ud83d emoji, ")
    result = await complete(client, uri, 0, 16)
    json.dumps([item.label for item in result.items])  # whatever came back is valid data
    await still_serving(client)
