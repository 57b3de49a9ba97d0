"""End to end over real LSP: completion, inline completion, the expand command, and bad input
that must never kill the server.

One server per client kind for the whole module (starting one costs seconds). The default model
is a placeholder, so these tests check structure and invariants (edit ranges, ordering, counts),
not completion quality.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcMethodNotFound
from pytest_lsp import LanguageClient

from tests.server_support import (
    EXPAND,
    NO_TIME_LIMIT,
    READY_WAIT_S,
    Documents,
    Session,
    complete,
    expand,
    inline,
    shared_session,
    split_line,
    status,
)

# Short expansions keep the expand tests cheap; their length is not under test.
session = shared_session(initialization_options={"maxExpansionTokens": 16, **NO_TIME_LIMIT})


async def test_capabilities_are_advertised(session: Session) -> None:
    capabilities = session.result.capabilities
    assert capabilities.completion_provider is not None
    assert {" ", "<", ":"} <= set(capabilities.completion_provider.trigger_characters)
    assert capabilities.inline_completion_provider is not None
    assert capabilities.execute_command_provider is not None
    assert EXPAND in capabilities.execute_command_provider.commands
    assert session.result.server_info.name == "prompt-ls"


@pytest.mark.parametrize(
    "line",
    [
        "a woman portra",
        "a portrait of a woman, ",
        "🐱🐱 a woman portra",  # astral emoji before the cursor: columns shift
        "🐱🐱 a portrait of a woman, ",
        "東京の夜景, cafe\u0301, a portrait of a woman, ",  # CJK and a combining mark
    ],
)
async def test_completion_items_edit_exactly_their_span(session: Session, line: str) -> None:
    uri = session.documents.open(f"first line\n{line}\n")
    cursor = session.column(line)
    result = await complete(session.client, uri, 1, cursor)
    assert result.is_incomplete is True
    assert 0 < len(result.items) <= 8
    assert [item.sort_text for item in result.items] == sorted(
        item.sort_text for item in result.items
    )
    for item in result.items:
        edit = item.text_edit
        assert isinstance(edit, types.TextEdit)
        assert edit.range.start.line == edit.range.end.line == 1
        assert edit.range.start.character <= cursor == edit.range.end.character
        before, inside, after = split_line(line, edit.range, session.encoding)
        assert (before, after) == (line[: len(before)], "")
        assert item.filter_text.startswith(inside)
        assert before + edit.new_text in _documentation_text(item)
        assert item.detail and item.label


def _documentation_text(item: types.CompletionItem) -> str:
    documentation = item.documentation
    if isinstance(documentation, types.MarkupContent):
        return documentation.value
    assert isinstance(documentation, str)
    return documentation


async def test_completion_at_the_very_end_without_a_line_break(session: Session) -> None:
    text = "portrait of a knight, "
    uri = session.documents.open(text)
    result = await complete(session.client, uri, 0, len(text))
    assert result.items
    for item in result.items:
        assert item.text_edit.range.end == types.Position(line=0, character=len(text))


async def test_documents_that_are_not_served_get_nothing(session: Session) -> None:
    uri = session.documents.open("import os\nos.pa", language_id="python", suffix=".py")
    result = await complete(session.client, uri, 1, 5)
    assert len(result.items) == 0
    inline_result = await inline(
        session.client, uri, 1, 5, types.InlineCompletionTriggerKind.Invoked
    )
    assert len(inline_result.items) == 0


async def test_a_document_matched_by_file_pattern_is_served(session: Session) -> None:
    uri = session.documents.open("a castle on a hill, ", language_id="unknown")
    assert uri.endswith(".prompt")
    result = await complete(session.client, uri, 0, 20)
    assert result.items


async def test_automatic_inline_completion_gives_one_ghost_text(session: Session) -> None:
    text = "a portrait of a woman, "
    uri = session.documents.open(text)
    result = await inline(
        session.client, uri, 0, len(text), types.InlineCompletionTriggerKind.Automatic
    )
    assert len(result.items) == 1
    (item,) = result.items
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    assert item.range is not None
    assert item.range.start.character <= len(text) == item.range.end.character


async def test_invoked_inline_completion_gives_alternatives(session: Session) -> None:
    text = "a portrait of a woman, "
    uri = session.documents.open(text)
    result = await inline(
        session.client, uri, 0, len(text), types.InlineCompletionTriggerKind.Invoked
    )
    assert 1 < len(result.items) <= 8
    assert len({item.insert_text for item in result.items}) == len(result.items)
    for item in result.items:
        assert item.range is not None
        assert item.range.end == types.Position(line=0, character=len(text))


async def test_expand_returns_n_strings(session: Session) -> None:
    assert len(await expand(session.client, "a castle on a hill", 1)) == 1
    expansions = await expand(session.client, "a castle on a hill")
    assert len(expansions) == 4
    assert all(isinstance(text, str) and text.strip() for text in expansions)


@pytest.mark.parametrize(
    "arguments", [[], [42], ["a castle", 0], ["a castle", "two"], ["a", 2, "extra"]]
)
async def test_expand_with_bad_arguments_is_invalid_params(
    session: Session, arguments: list[object]
) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="takes"):
        await expand(session.client, *arguments)
    assert (await status(session.client))["state"] == "ready"


async def test_an_unknown_command_is_an_error_not_a_crash(session: Session) -> None:
    with pytest.raises(JsonRpcInvalidParams):
        await session.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="promptAutocomplete.nope", arguments=[])
        )
    assert (await status(session.client))["state"] == "ready"


# -- bad input ---------------------------------------------------------------------------


@pytest.fixture()
def client(session: Session) -> LanguageClient:
    return session.client


async def still_serving(client: LanguageClient) -> None:
    """The server is alive and answers (the last test checks the model still does too)."""
    assert (await status(client))["state"] == "ready"


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
        b"X-Junk: " + b"x" * 200_000 + b"\r\n",  # longer than the reader's line buffer
    ],
    ids=["truncated", "array", "version", "bad-utf8", "header", "unknown-notification", "long"],
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
    assert result.items
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
    assert result.is_incomplete and result.items
    for item in result.items:
        assert item.text_edit.range.end == types.Position(line=last, character=len(long_line))
    await still_serving(client)


@pytest.mark.parametrize(
    ("line", "offers"),
    [
        ("🧙‍♂️ wizard, 🔥🔥 fire, ", True),
        # math letters: the model alone offers nothing after them; the shipped statistics
        # offer the words that follow "text"
        ("\U0001d557\U0001d552\U0001d55f\U0001d554\U0001d56a text ", True),
        ("e\u0301\u0302\u0303\u0304 zalgo ", True),
        ("right-to-left \u202e\u05d8\u05e7\u05e1\u05d8\u202c ", True),
        ("\ufeffbom and \u200bzero width ", True),
    ],
)
async def test_odd_unicode(session: Session, line: str, offers: bool) -> None:
    uri = session.documents.open(line)
    result = await complete(session.client, uri, 0, session.column(line))
    assert bool(result.items) == offers
    for item in result.items:
        assert item.text_edit.range.end.character == session.column(line)
    await still_serving(session.client)


async def test_a_lone_surrogate_from_the_client(client: LanguageClient) -> None:
    # Python's json writes a lone surrogate as the escape \ud83d, as a buggy client might.
    uri = Documents(client).open("broken \ud83d emoji, ")
    result = await complete(client, uri, 0, 16)
    json.dumps([item.label for item in result.items])  # whatever came back is valid data
    await still_serving(client)


async def test_after_all_that_the_model_still_completes(client: LanguageClient) -> None:
    uri = Documents(client).open("a portrait of a woman, ")
    assert (await complete(client, uri, 0, 23)).items
    assert (await status(client))["failed"] == 0
