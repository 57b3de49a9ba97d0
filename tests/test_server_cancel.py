"""$/cancelRequest answers -32800 and frees the model thread; edits drop stale requests.

A long expansion (many candidates, long token budget) keeps the model thread busy; the
server's status request, answered on the event loop, shows when it is running and what the
thread did. Waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.server_support import (
    EXPAND,
    NO_TIME_LIMIT,
    Session,
    complete,
    eventually,
    expand,
    shared_session,
    status,
)

LONG_EXPANSION = ["a castle on a hill", 16]


# Long expansions with no time limit: seconds of work for the model thread.
session = shared_session(initialization_options={"maxExpansionTokens": 128, **NO_TIME_LIMIT})


def send_expand(session: Session, request_id: str, arguments: list[Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        session.client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND,
            types.ExecuteCommandParams(command=EXPAND, arguments=arguments),
            msg_id=request_id,
        )
    )


def cancel(session: Session, request_id: str) -> None:
    session.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=request_id))


async def until_busy(session: Session) -> dict[str, Any]:
    async def busy() -> bool:
        return (await status(session.client))["busy"]

    await eventually(busy, "the model thread started the long expansion")
    return await status(session.client)


async def until_pending(session: Session, count: int) -> None:
    async def queued() -> bool:
        return (await status(session.client))["pending"] == count

    await eventually(queued, f"{count} requests wait for the model thread")


async def until_idle(session: Session) -> dict[str, Any]:
    async def idle() -> bool:
        return not (await status(session.client))["busy"]

    await eventually(idle, "the model thread is free again")
    return await status(session.client)


async def test_cancelling_a_running_request_stops_the_model(session: Session) -> None:
    running = send_expand(session, "long-expand-1", LONG_EXPANSION)
    before = await until_busy(session)
    cancel(session, "long-expand-1")
    with pytest.raises(JsonRpcRequestCancelled):
        await running
    after = await until_idle(session)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["completed"] == before["completed"]
    # The thread is free: a short request is served.
    assert len(await expand(session.client, "a castle", 1)) == 1


async def test_cancelling_a_queued_completion(session: Session) -> None:
    running = send_expand(session, "long-expand-2", LONG_EXPANSION)
    await until_busy(session)
    uri = session.documents.open("a portrait of a woman, ")
    queued = asyncio.ensure_future(
        session.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_COMPLETION,
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=0, character=23),
            ),
            msg_id="queued-completion",
        )
    )
    await until_pending(session, 2)
    cancel(session, "queued-completion")
    with pytest.raises(JsonRpcRequestCancelled):
        await queued
    cancel(session, "long-expand-2")
    with pytest.raises(JsonRpcRequestCancelled):
        await running
    await until_idle(session)
    assert (await complete(session.client, uri, 0, 23)).items


async def test_an_edit_drops_the_pending_request_of_that_document(session: Session) -> None:
    running = send_expand(session, "long-expand-3", LONG_EXPANSION)
    await until_busy(session)
    uri = session.documents.open("a portrait of a woman, ")
    pending = asyncio.ensure_future(complete(session.client, uri, 0, 23))
    await until_pending(session, 2)
    session.documents.replace(uri, "a portrait of a woman, oil painting, ")
    cancel(session, "long-expand-3")
    with pytest.raises(JsonRpcRequestCancelled):
        await running
    stale = await pending
    assert stale.is_incomplete is True
    assert len(stale.items) == 0
    fresh = await complete(session.client, uri, 0, 37)
    assert fresh.items
