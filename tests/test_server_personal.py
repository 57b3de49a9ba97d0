"""prompt-ls learns the user's prompts: the learn command, saved and closed documents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from model_store.personal import PersonalStore, store_path
from tests.server_support import Session, end_session, start_session, wait_until_ready

LEARN = "promptAutocomplete.learn"


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Session, Path]]:
    home = tmp_path_factory.mktemp("home")
    session = await start_session("neovim", home)
    await wait_until_ready(session.client)
    yield session, home
    await end_session(session)


def stored(home: Path, negative: bool = False) -> list[str]:
    store = PersonalStore(store_path(home))
    try:
        return store.prompts(negative)
    finally:
        store.close()


async def learn(session: Session, *arguments: Any) -> dict[str, Any]:
    result = await session.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=LEARN, arguments=list(arguments))
    )
    return dict(result)


async def until_stored(home: Path, prompt: str) -> None:
    """didSave and didClose are notifications: nothing answers when they are done."""
    for _ in range(400):
        if prompt in stored(home):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prompt!r} was never learned; stored: {stored(home)}")


async def test_the_learn_command_stores_positive_and_negative_prompts(
    served: tuple[Session, Path],
) -> None:
    session, home = served
    found = await learn(session, "a fox in snow\nNegative prompt: blurry\n\na fox in snow")
    assert (found["learned"], found["duplicates"]) == (2, 1)
    assert "a fox in snow" in stored(home)
    assert "blurry" in stored(home, negative=True)


async def test_the_learn_command_refuses_bad_arguments(served: tuple[Session, Path]) -> None:
    session, _ = served
    with pytest.raises(JsonRpcInvalidParams, match="takes \\[text\\]"):
        await learn(session, 42)


async def test_saved_documents_are_learned_once_and_closed_ones_too(
    served: tuple[Session, Path],
) -> None:
    session, home = served
    uri = session.documents.open("an owl at dusk\nan owl at dusk\nNegative prompt: jpeg artifacts")
    session.client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await until_stored(home, "an owl at dusk")
    assert stored(home).count("an owl at dusk") == 1
    assert "jpeg artifacts" in stored(home, negative=True)
    session.documents.replace(uri, "an owl at dusk\na heron at dawn")
    session.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await until_stored(home, "a heron at dawn")
    assert stored(home).count("an owl at dusk") == 1


async def test_documents_the_server_does_not_serve_are_not_learned(
    served: tuple[Session, Path],
) -> None:
    session, home = served
    uri = session.documents.open("import os", language_id="python", suffix=".py")
    session.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await learn(session, "a marker after the close")  # notifications are handled in order
    assert "import os" not in stored(home)


async def test_with_learning_off_nothing_is_stored(served: tuple[Session, Path]) -> None:
    session, home = served
    session.client.set_configuration({"promptAutocomplete": {"learn": False}})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    try:
        for attempt in range(400):  # the setting is pulled from the client: wait for it
            if (await learn(session, f"probe {attempt}")).get("disabled"):
                break
            await asyncio.sleep(0.05)
        uri = session.documents.open("not kept either")
        session.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        assert (await learn(session, "nor this"))["disabled"]
        assert not {"not kept either", "nor this"} & set(stored(home))
    finally:
        session.client.set_configuration({"promptAutocomplete": {}})
        session.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None)
        )
