"""Settings from initializationOptions and workspace/configuration, changed at run time."""

from __future__ import annotations

from lsprotocol import types

from tests.server_support import (
    NO_TIME_LIMIT,
    Session,
    complete,
    eventually,
    message_containing,
    shared_session,
)

PROMPT = "a portrait of a woman, "  # a reasonable model has several next phrases here


session = shared_session(
    initialization_options={"maxItems": 1, "safeMode": "sometimes", **NO_TIME_LIMIT},
    configuration={"promptAutocomplete": {"maxItems": 3}},
)


async def item_count(session: Session) -> int:
    uri = session.documents.open(PROMPT)
    return len((await complete(session.client, uri, 0, len(PROMPT))).items)


async def change_configuration(session: Session, section: dict[str, object]) -> None:
    session.client.set_configuration({"promptAutocomplete": section})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )


async def test_workspace_configuration_beats_initialization_options(session: Session) -> None:
    assert 1 < await item_count(session) <= 3


async def test_a_bad_initialization_option_is_reported_at_startup(session: Session) -> None:
    message = await message_containing(session.client, "safeMode")
    assert message.type == types.MessageType.Warning
    assert "initializationOptions" in message.message


async def test_changing_max_items_changes_the_item_count(session: Session) -> None:
    await change_configuration(session, {"maxItems": 2})

    async def two_items() -> bool:
        return await item_count(session) == 2

    await eventually(two_items, "maxItems 2 in effect")


async def test_an_invalid_setting_is_reported_and_the_lower_layer_kept(
    session: Session,
) -> None:
    await change_configuration(session, {"maxItems": "lots", "temperature": 0.4})
    message = await message_containing(session.client, "maxItems='lots'")
    assert message.type == types.MessageType.Warning

    async def init_option_in_force() -> bool:
        return await item_count(session) == 1  # initializationOptions' maxItems

    await eventually(init_option_in_force, "maxItems back to the initializationOptions value")


async def test_settings_that_are_not_an_object_keep_the_server_working(
    session: Session,
) -> None:
    session.client.set_configuration({"promptAutocomplete": ["not", "settings"]})
    session.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    await message_containing(session.client, "expected an object")
    assert await item_count(session) == 1


async def test_settings_the_model_cannot_take_are_reported(session: Session) -> None:
    await change_configuration(session, {"maxItems": 4, "maxExpansionTokens": 1000})
    message = await message_containing(session.client, "the model refused them")
    assert "max_expansion_tokens" in message.message
    assert message.type == types.MessageType.Warning
    assert await item_count(session) == 1  # the whole refused set is dropped
