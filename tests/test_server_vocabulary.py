"""End to end over real LSP: the CLIP token budget (diagnostics, promptAutocomplete.tokens),
tags and the user's LoRAs in completion items.

One server for the module, as Neovim (starting one costs seconds).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pytest_lsp import LanguageClient
from safetensors.numpy import save_file

from tests.server_support import (
    Session,
    complete,
    end_session,
    eventually,
    start_session,
    status,
    wait_until_ready,
)

TOKENS = "promptAutocomplete.tokens"


@pytest_asyncio.fixture(scope="module", name="session")
async def session_fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    home = tmp_path_factory.mktemp("home")
    loras = tmp_path_factory.mktemp("loras")
    save_file(
        {"w": np.zeros(1, dtype=np.float32)},
        str(loras / "inkStyle.safetensors"),
        metadata={"ss_tag_frequency": json.dumps({"5_ink": {"ink wash": 9, "monochrome": 4}})},
    )
    settings = {"tokenLimit": 150, "loraDirs": [str(loras)], "timeBudgetMs": 600_000}
    started = await start_session("neovim", home, configuration={"promptAutocomplete": settings})
    await wait_until_ready(started.client)
    yield started
    await end_session(started)


async def tokens(client: LanguageClient, *arguments: Any) -> dict[str, Any]:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=TOKENS, arguments=list(arguments))
    )
    assert isinstance(result, dict)
    return result


async def diagnostics_of(client: LanguageClient, uri: str, count: int) -> list[types.Diagnostic]:
    async def arrived() -> bool:
        return len(client.diagnostics.get(uri, [])) == count

    await eventually(arrived, f"{count} diagnostics on {uri}")
    return list(client.diagnostics[uri])


async def test_the_tokens_command(session: Session) -> None:
    counted = await tokens(
        session.client, "(masterpiece:1.2), cat <lora:x:0.5> BREAK " + "dog " * 80
    )
    assert counted == {"tokens": 75 + 80, "chunks": [3, 75, 5], "limit": 150}


@pytest.mark.parametrize("arguments", [[], [42], ["a", "b"]])
async def test_the_tokens_command_refuses_bad_arguments(
    session: Session, arguments: list[object]
) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="takes"):
        await tokens(session.client, *arguments)
    assert (await status(session.client))["state"] == "ready"


async def test_diagnostics_show_where_chunks_start(session: Session) -> None:
    line = "red cat BREAK blue dog BREAK gr\u00fcn BREAK x"
    uri = session.documents.open("first line\n" + line)
    found = await diagnostics_of(session.client, uri, 3)
    assert [d.severity for d in found] == [
        types.DiagnosticSeverity.Information,
        types.DiagnosticSeverity.Warning,  # tokens 151- are past tokenLimit 150
        types.DiagnosticSeverity.Warning,
    ]
    first = found[0].range
    assert (first.start.line, first.start.character, first.end.character) == (1, 14, 22)
    assert "chunk 2" in found[0].message
    session.documents.replace(uri, "short now")
    await diagnostics_of(session.client, uri, 0)


async def test_documents_that_are_not_served_get_no_diagnostics(session: Session) -> None:
    uri = session.documents.open("a BREAK b", language_id="python", suffix=".py")
    served = session.documents.open("a BREAK b")
    await diagnostics_of(session.client, served, 1)
    assert not session.client.diagnostics.get(uri)


async def items_at_end(session: Session, text: str) -> list[types.CompletionItem]:
    uri = session.documents.open(text)
    return (await complete(session.client, uri, 0, session.column(text))).items


async def test_an_alias_shows_as_alias_to_tag_with_its_category(session: Session) -> None:
    (item, *_) = await items_at_end(session, "masterpiece, 1girls")
    assert item.label == "1girls → 1girl"
    assert item.detail is not None and item.detail.startswith("general tag")
    assert item.text_edit is not None and item.text_edit.new_text == "1girl, "
    assert item.kind == types.CompletionItemKind.Keyword


async def test_lora_names_and_trigger_words(session: Session) -> None:
    (item,) = await items_at_end(session, "a castle, <lora:in")
    assert item.text_edit is not None and item.text_edit.new_text == "inkStyle:1>"
    found = await items_at_end(session, "a castle, <lora:inkStyle:0.7>, ")
    assert [i.label for i in found[:2]] == ["ink wash", "monochrome"]


async def test_a_line_too_long_for_a_prompt_is_not_counted(session: Session) -> None:
    uri = session.documents.open("cat, " * 1000 + "\na BREAK b")
    (found,) = await diagnostics_of(session.client, uri, 1)
    assert found.range.start.line == 1
    assert (await status(session.client))["state"] == "ready"
