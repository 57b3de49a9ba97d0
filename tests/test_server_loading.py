"""First use of a model: background loading with $/progress, answers meanwhile, failures.

Each test starts its own server with a fresh model-store root, so nothing is cached.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types

from model_store.store import ModelStore
from tests.conftest import DEFAULT_MODEL_DIR
from tests.server_support import (
    CLIENTS,
    NO_TIME_LIMIT,
    Session,
    complete,
    end_session,
    eventually,
    expand,
    message_containing,
    start_session,
    status,
    wait_for_state,
    wait_until_ready,
)

PROMPT = "a castle on a hill, "


@pytest.fixture(params=CLIENTS)
def client_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="module")
async def open_session(client_name: str, tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start a server with given initialization options; closed after the test."""
    sessions: list[Session] = []

    async def start(**initialization_options: object) -> Session:
        session = await start_session(
            client_name,
            tmp_path / "home",
            initialization_options={**NO_TIME_LIMIT, **initialization_options},
        )
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        await end_session(session)


def copy_of_default_model(directory: Path) -> Path:
    shutil.copytree(DEFAULT_MODEL_DIR, directory)
    return directory


def progress_values(session: Session) -> list[object]:
    return [value for values in session.client.progress_reports.values() for value in values]


async def assert_empty_answers(session: Session) -> None:
    """What a client gets while no model is ready: empty, never an error or a hang."""
    uri = session.documents.open(PROMPT)
    result = await complete(session.client, uri, 0, len(PROMPT))
    assert result.is_incomplete is True
    assert len(result.items) == 0
    assert await expand(session.client, PROMPT) == []


async def test_first_use_of_a_local_model_reports_progress(open_session, tmp_path: Path) -> None:
    model_dir = copy_of_default_model(tmp_path / "my-model")
    session = await open_session(model=str(model_dir))
    await wait_until_ready(session.client)
    assert (await status(session.client))["model"] == str(model_dir)

    async def ended() -> bool:
        values = progress_values(session)
        return bool(values) and isinstance(values[-1], types.WorkDoneProgressEnd)

    await eventually(ended, "the load's progress ended")
    values = progress_values(session)
    assert isinstance(values[0], types.WorkDoneProgressBegin)
    assert "my-model" in values[0].title
    assert all(isinstance(value, types.WorkDoneProgressReport) for value in values[1:-1])
    assert any("verifying" in (value.message or "") for value in values[1:-1])
    uri = session.documents.open(PROMPT)
    assert (await complete(session.client, uri, 0, len(PROMPT))).items


async def test_requests_during_loading_answer_empty_at_once(open_session, tmp_path: Path) -> None:
    """Another process holds the store's lock on a model it is downloading: loading waits."""
    store = ModelStore(tmp_path / "home")
    stored_name = "hf-example--prompt-model"  # the store's name for this hf: reference
    with store._lock(stored_name):  # what a second process preparing the same model holds
        session = await open_session(model="hf:example/prompt-model")

        async def waiting() -> bool:
            return any(
                "waiting for another process" in (getattr(value, "message", None) or "")
                for value in progress_values(session)
            )

        await eventually(waiting, "progress says the load waits for the other process")
        assert (await status(session.client))["state"] == "loading"
        await assert_empty_answers(session)
        # The other process finishes: it publishes the model, then lets go of the lock.
        copy_of_default_model(store.models_dir / stored_name)
    await wait_until_ready(session.client)
    uri = session.documents.open(PROMPT)
    assert (await complete(session.client, uri, 0, len(PROMPT))).items


async def test_a_corrupt_model_is_reported_and_a_new_setting_recovers(
    open_session, tmp_path: Path
) -> None:
    model_dir = copy_of_default_model(tmp_path / "corrupt-model")
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))

    session = await open_session(model=str(model_dir))
    failed = await wait_for_state(session.client, "failed", "ready")
    assert failed["state"] == "failed"
    assert "model.safetensors" in failed["error"]
    message = await message_containing(session.client, "cannot load model")
    assert message.type == types.MessageType.Error
    assert "sha256" in message.message
    await assert_empty_answers(session)

    good_dir = copy_of_default_model(tmp_path / "good-model")
    session.client.set_configuration({"promptAutocomplete": {"model": str(good_dir)}})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    await eventually(lambda: _model_is(session, str(good_dir)), "the new model setting took effect")
    await wait_until_ready(session.client)
    uri = session.documents.open(PROMPT)
    assert (await complete(session.client, uri, 0, len(PROMPT))).items


async def _model_is(session: Session, ref: str) -> bool:
    return (await status(session.client))["model"] == ref
