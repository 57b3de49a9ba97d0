"""``<mask>`` infilling over real LSP: the menu on a mask holds ranked fillers for that span.

One server per model kind: the default causal LM (infilling by rescoring) and a random-weight
masked LM checkpoint (fill-mask), chosen by the checkpoint manifest's kind. Structure only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lsprotocol import types

from tests.server_support import (
    NO_TIME_LIMIT,
    Session,
    complete,
    end_session,
    split_line,
    start_session,
    status,
    wait_until_ready,
)
from tests.study_models import random_masked_lm


@pytest_asyncio.fixture(scope="module", params=["default", "masked-lm"])
async def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Session]:
    model = "default"
    if request.param == "masked-lm":
        model = str(random_masked_lm(tmp_path_factory.mktemp("mlm")))
    started = await start_session(
        "neovim",
        tmp_path_factory.mktemp("home"),
        initialization_options={"model": model, "maxExpansionTokens": 16, **NO_TIME_LIMIT},
    )
    await wait_until_ready(started.client)
    yield started
    await end_session(started)


def _fill_span(line: str, item: types.CompletionItem, session: Session) -> str:
    edit = item.text_edit
    assert isinstance(edit, types.TextEdit)
    return split_line(line, edit.range, session.encoding)[1]


@pytest.mark.parametrize(
    ("line", "cursor_after"),
    [
        ("a portrait of <mask> in the style of greg rutkowski", "a portrait of <mask>"),
        ("a portrait of <mask> in the style of greg rutkowski", "a portrait of <ma"),
        ("a castle, <mask>", "a castle, <mask>"),
    ],
)
async def test_completion_on_a_mask_offers_fillers_for_exactly_that_span(
    session: Session, line: str, cursor_after: str
) -> None:
    uri = session.documents.open(f"a first line\n{line}\n")
    result = await complete(session.client, uri, 1, session.column(cursor_after))
    assert result.items
    for rank, item in enumerate(result.items):
        assert _fill_span(line, item, session) == "<mask>"
        assert item.text_edit.range.start.line == item.text_edit.range.end.line == 1
        assert item.detail.startswith("fill")
        assert item.sort_text == f"{rank:04d}" and item.filter_text.startswith("<mask>")
        assert "<mask>" not in item.text_edit.new_text and item.text_edit.new_text.strip()
    scores = [float(item.detail.rsplit(" ", 1)[1]) for item in result.items]
    assert scores == sorted(scores, reverse=True)


async def test_completion_elsewhere_in_a_masked_prompt_is_not_a_fill(session: Session) -> None:
    line = "a portrait of <mask> in the style of greg rut"
    uri = session.documents.open(line)
    result = await complete(session.client, uri, 0, session.column(line))
    assert all(not item.detail.startswith("fill") for item in result.items)
    assert ">" in session.result.capabilities.completion_provider.trigger_characters
    assert (await status(session.client))["failed"] == 0
