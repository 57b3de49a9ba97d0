"""End to end: completion, inline completion and the expand command over real LSP.

One server per client kind for the whole module. The default model is a placeholder, so these
tests check structure and invariants (edit ranges, ordering, counts), not completion quality.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from tests.server_support import (
    CLIENTS,
    EXPAND,
    NO_TIME_LIMIT,
    Session,
    complete,
    end_session,
    expand,
    inline,
    split_line,
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


async def test_capabilities_are_advertised(session: Session) -> None:
    capabilities = session.result.capabilities
    assert capabilities.completion_provider is not None
    assert " " in capabilities.completion_provider.trigger_characters
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
    assert len(await expand(session.client, "a castle on a hill", 2)) == 2
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
