"""First use of a model: background loading with $/progress, answers meanwhile, failures.

Each test starts its own server with a fresh model-store root, so nothing is cached.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from model_store.checkpoint import read_manifest
from model_store.ngram import counting, storage
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


async def test_a_corrupt_model_is_reported_and_a_good_one_loads_with_progress(
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

    # First use of another model, from a fresh directory: a new setting reloads.
    good_dir = copy_of_default_model(tmp_path / "my-model")
    session.client.set_configuration({"promptAutocomplete": {"model": str(good_dir)}})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    await eventually(lambda: _model_is(session, str(good_dir)), "the new model setting took effect")
    await wait_until_ready(session.client)
    uri = session.documents.open(PROMPT)
    assert (await complete(session.client, uri, 0, len(PROMPT))).items

    async def ended() -> bool:
        values = progress_of(session, "my-model")
        return bool(values) and isinstance(values[-1], types.WorkDoneProgressEnd)

    await eventually(ended, "the load's progress ended")
    values = progress_of(session, "my-model")
    assert isinstance(values[0], types.WorkDoneProgressBegin)
    assert all(isinstance(value, types.WorkDoneProgressReport) for value in values[1:-1])
    assert any("verifying" in (value.message or "") for value in values[1:-1])
    assert values[-1].message == "ready"


def progress_of(session: Session, title_part: str) -> list[object]:
    """The progress values of the load whose title names ``title_part``."""
    for values in session.client.progress_reports.values():
        if values and title_part in getattr(values[0], "title", ""):
            return list(values)
    return []


async def _model_is(session: Session, ref: str) -> bool:
    return (await status(session.client))["model"] == ref


async def test_the_statistics_pack_serves_before_the_model_and_the_blend_after(
    open_session,
) -> None:
    """A fresh install (empty store, no corpus): the pack in the package answers while the
    model loads, then the model takes over; status and $/progress say so."""
    session = await open_session()
    text = "portrait of a woman, highly det"
    uri = session.documents.open(text)
    seen: list[tuple[str, bool]] = []
    while True:
        current = await status(session.client)
        items = (await complete(session.client, uri, 0, len(text))).items
        seen.append((current["state"], bool(items)))
        if current["state"] in ("ready", "failed"):
            break
    assert current["state"] == "ready" and current["statistics"] == "pack", current
    assert ("statistics", True) in seen, seen  # answered from the pack before the model
    assert any(item.label.startswith("detailed") for item in items)
    assert any(
        "serving from the corpus statistics" in (getattr(value, "message", None) or "")
        for value in progress_values(session)
    )


HELD_MODEL_SERVER = [sys.executable, "-m", "tests.held_model_server"]


async def test_initialize_and_the_statistics_answer_first_and_the_model_serves_without_torch(
    tmp_path: Path,
) -> None:
    """With the model's build held back (``tests/held_model_server.py``): ``initialize`` is
    answered and the pack serves; the build starts only once the statistics have answered,
    CLIP's diagnostics come without the model, and the model then takes over. torch is
    never imported: the default model runs on numpy."""
    session = await start_session(
        "visual_studio_code",
        tmp_path / "home",
        initialization_options=NO_TIME_LIMIT,
        command=HELD_MODEL_SERVER,
    )
    client = session.client
    try:
        assert session.result.capabilities.completion_provider is not None
        assert await probe(client) == {"building": False, "torch": False}
        await wait_for_state(client, "statistics")
        assert await probe(client) == {"building": False, "torch": False}
        text = "portrait of a woman, highly det"
        uri = session.documents.open(text)
        items = (await complete(client, uri, 0, len(text))).items
        assert any(item.label.startswith("detailed") for item in items)

        async def building() -> bool:
            return (await probe(client))["building"]

        await eventually(building, "the model's build started after the first answer")
        await eventually(_has_diagnostics(session, uri), "CLIP diagnostics without the model")
        assert (await probe(client))["torch"] is False
        assert (await status(client))["state"] == "statistics"
        await client.protocol.send_request_async("test/releaseModel", None)
        await wait_until_ready(client)
        assert (await status(client))["state"] == "ready"
        items = (await complete(client, uri, 0, len(text))).items
        assert any(item.label.startswith("detailed") for item in items)
        assert (await probe(client))["torch"] is False
    finally:
        await end_session(session)


async def probe(client: LanguageClient) -> dict[str, bool]:
    return dict((await client.protocol.send_request_async("test/probe", None))._asdict())


def _has_diagnostics(session: Session, uri: str) -> Callable[[], Awaitable[bool]]:
    async def published() -> bool:
        return uri in session.client.diagnostics

    return published


async def test_damaged_statistics_are_named_and_the_model_serves_alone(
    open_session, tmp_path: Path
) -> None:
    """A truncated file of the store's statistics: the user is told which and how to repair
    it, and completions come from the model meanwhile."""
    model = copy_of_default_model(tmp_path / "model")
    digest = read_manifest(model)["corpus"]["sha256"]
    directory = storage.stats_dir(digest, tmp_path / "home" / "wordstats")
    storage.save(
        counting.build([PROMPT, "a castle on a hill at night"]),
        directory,
        quantised=False,
        name="s",
    )
    victim = directory / "order3_words.npy"
    victim.write_bytes(victim.read_bytes()[:20])
    session = await open_session(model=str(model))
    message = await message_containing(session.client, "corpus statistics not used")
    assert message.type == types.MessageType.Warning
    assert "order3_words.npy" in message.message and "prompt-models stats" in message.message
    await wait_until_ready(session.client)
    assert (await status(session.client))["statistics"] == "none"
    uri = session.documents.open(PROMPT)
    assert (await complete(session.client, uri, 0, len(PROMPT))).items
