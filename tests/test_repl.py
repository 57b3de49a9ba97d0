"""The REPL driven key by key (pipe input, no terminal) against a real prompt-ls.

These assert behaviour (a ghost appears, Tab inserts exactly it, ...), not suggestion quality:
they hold for any model, including the tiny placeholder default.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prompt_toolkit.buffer import CompletionState
from prompt_toolkit.input import create_pipe_input

from client_tui.lsp import PromptServerClient, ServerState
from model_store.personal import PersonalStore, store_path
from prompt_words import ghost_word
from tests.repl_support import (
    ALT_LEFT_BRACKET,
    ALT_RIGHT_BRACKET,
    BACKSPACE,
    CTRL_C,
    CTRL_RIGHT,
    CTRL_SPACE,
    DOWN,
    ENTER,
    ESCAPE,
    F2,
    LEFT,
    TAB,
    WAIT_S,
    ReplDriver,
    make_client,
    wait_for,
    wait_until_loaded,
)

IDEA = "woman portrait"
PARTIAL = "woman portra"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
async def server(home: Path) -> AsyncIterator[PromptServerClient]:
    client = make_client(home)
    await asyncio.wait_for(client.start(), WAIT_S)
    await wait_until_loaded(client)
    yield client
    await client.stop()


@pytest.fixture
async def repl(server: PromptServerClient, tmp_path: Path) -> AsyncIterator[ReplDriver]:
    with create_pipe_input() as pipe:
        driver = ReplDriver(server, pipe, history_file=tmp_path / "history", copy=True)
        await driver.start()
        yield driver
        await driver.quit()


async def test_ghost_appears_and_tab_inserts_exactly_it(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    ghost = await repl.wait_for_ghost()
    await repl.press(TAB)
    await wait_for(lambda: repl.buffer.text == IDEA + ghost, "Tab to insert the ghost")
    assert repl.buffer.cursor_position == len(IDEA + ghost)


async def test_ctrl_right_inserts_the_first_word_of_the_ghost(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    ghost = await repl.wait_for_ghost()
    await repl.press(CTRL_RIGHT)
    expected = IDEA + ghost_word(ghost)
    await wait_for(lambda: repl.buffer.text == expected, "Ctrl-Right to insert one word")
    if ghost_word(ghost) != ghost:
        # The rest of the same ghost stays on offer without a new request.
        await wait_for(lambda: repl.ghost == ghost[len(ghost_word(ghost)) :], "the ghost's rest")


async def test_typing_the_ghosts_next_character_keeps_the_rest(repl: ReplDriver) -> None:
    await repl.type(PARTIAL)
    ghost = await repl.wait_for_ghost()
    assert len(ghost.rstrip()) >= 2, "the rest of a partial word is at least two characters"
    await repl.type(ghost[0])
    await wait_for(lambda: repl.ghost == ghost[1:], "the rest of the ghost")


async def test_moving_the_cursor_drops_the_ghost(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    await repl.wait_for_ghost()
    await repl.press(LEFT)
    await wait_for(lambda: repl.ghost is None, "the ghost to go")
    assert repl.buffer.text == IDEA


async def test_alt_brackets_cycle_through_alternatives(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    first = await repl.wait_for_ghost()
    await repl.press(ALT_RIGHT_BRACKET)
    await wait_for(lambda: repl.repl.cycler.text == IDEA, "alternatives to arrive")
    alternatives = repl.repl.cycler.ghosts
    assert first in alternatives  # the ghost on screen stays one of the choices
    following = alternatives[(alternatives.index(first) + 1) % len(alternatives)]
    await wait_for(lambda: repl.ghost == following, "the next alternative")
    await repl.press(ALT_LEFT_BRACKET)
    await wait_for(lambda: repl.ghost == first, "the previous alternative")
    await repl.press(ALT_RIGHT_BRACKET)
    await wait_for(lambda: repl.ghost == following, "the next alternative again")
    await repl.press(TAB)
    await wait_for(lambda: repl.buffer.text == IDEA + following, "Tab to insert the alternative")


async def test_ctrl_space_menu_inserts_the_selected_item(repl: ReplDriver) -> None:
    await repl.type(IDEA + " ")
    await repl.press(CTRL_SPACE)
    state = await _wait_for_menu(repl)
    first = state.completions[0]
    await repl.press(DOWN)
    await wait_for(lambda: menu_index(repl) == 0, "the first item")
    await repl.press(ENTER)  # keeps the item and closes the menu; prints nothing
    await wait_for(lambda: repl.buffer.complete_state is None, "the menu to close")
    before = IDEA + " "
    start = len(before) + first.start_position
    assert repl.buffer.text == before[:start] + first.text
    assert repl.printed() == []


async def test_escape_closes_the_menu_and_restores_the_text(repl: ReplDriver) -> None:
    await repl.type(IDEA + " ")
    await repl.press(CTRL_SPACE)
    await _wait_for_menu(repl)
    await repl.press(DOWN)
    await wait_for(lambda: repl.buffer.text != IDEA + " ", "the selected item in the line")
    await repl.press(ESCAPE)  # told from Alt-<key> by the pause that follows it
    await wait_for(lambda: repl.buffer.complete_state is None, "the menu to close")
    assert repl.buffer.text == IDEA + " "


async def test_expand_key_offers_expansions_and_enter_prints_the_chosen_one(
    repl: ReplDriver,
) -> None:
    await repl.type(IDEA)
    await repl.press(F2)
    state = await _wait_for_menu(repl)
    expansions = [c.text for c in state.completions]
    assert all(c.start_position == -len(IDEA) for c in state.completions)
    await repl.press(DOWN)
    await repl.press(DOWN)
    await wait_for(
        lambda: repl.buffer.text == expansions[min(1, len(expansions) - 1)],
        "the chosen expansion to replace the line",
    )
    chosen = repl.buffer.text
    await repl.press(ENTER)  # close the menu
    await wait_for(lambda: repl.buffer.complete_state is None, "the menu to close")
    await repl.press(ENTER)  # print
    await wait_for(lambda: repl.printed() == [chosen], "the prompt on stdout")
    assert repl.copied == [chosen]


async def test_enter_prints_only_the_typed_line_and_keeps_history(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    await repl.wait_for_ghost()  # a ghost on screen is not part of the prompt
    await repl.press(ENTER)
    await wait_for(lambda: repl.printed() == [IDEA], "the prompt on stdout")
    assert IDEA in repl.repl.session.history.get_strings()


def learned(home: Path) -> list[str]:
    store = PersonalStore(store_path(home))
    try:
        return store.prompts(negative=False)
    finally:
        store.close()


async def test_enter_teaches_the_server_the_prompt(repl: ReplDriver, home: Path) -> None:
    await repl.type("a lighthouse in fog")
    await repl.press(ENTER)
    await wait_for(lambda: "a lighthouse in fog" in learned(home), "the prompt to be learned")


async def test_with_no_learn_enter_teaches_nothing(
    server: PromptServerClient, home: Path, tmp_path: Path
) -> None:
    with create_pipe_input() as pipe:
        driver = ReplDriver(server, pipe, history_file=tmp_path / "history", learn=False)
        await driver.start()
        await driver.type("a secret prompt")
        await driver.press(ENTER)
        await wait_for(lambda: driver.printed() == ["a secret prompt"], "the prompt on stdout")
        await driver.quit()
    assert "a secret prompt" not in learned(home)


async def test_ctrl_c_clears_the_line_without_printing(repl: ReplDriver) -> None:
    await repl.type(IDEA)
    await repl.press(CTRL_C)
    await wait_for(
        lambda: repl.buffer.text == "" and repl.repl.session.app.is_running, "a fresh, empty line"
    )
    assert repl.printed() == []


def menu_index(repl: ReplDriver) -> int | None:
    state = repl.buffer.complete_state
    return None if state is None else state.complete_index


async def _wait_for_menu(repl: ReplDriver) -> CompletionState:
    await wait_for(
        lambda: repl.buffer.complete_state is not None and repl.buffer.complete_state.completions,
        "menu items",
    )
    state = repl.buffer.complete_state
    assert state is not None
    return state


async def test_killed_server_is_restarted_and_the_typed_text_kept(tmp_path: Path) -> None:
    client = make_client(tmp_path)  # its own server: this test kills it
    with create_pipe_input() as pipe:
        driver = ReplDriver(client, pipe)
        await driver.start()  # the REPL starts the server itself
        await wait_until_loaded(client)
        await driver.type(IDEA)
        await driver.wait_for_ghost()
        old_pid = client.server_pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        await wait_for(lambda: "restart" in client.notice, "the toolbar to say it restarts")
        await wait_for(
            lambda: client.server_pid != old_pid and client.state is ServerState.RUNNING,
            "a new server",
        )
        assert driver.buffer.text == IDEA
        await wait_until_loaded(client)
        # New text, so the ghost can only come from the new server.
        await driver.press(BACKSPACE)
        edited = IDEA[:-1]
        ghost = await driver.wait_for_ghost()
        await driver.press(TAB)
        await wait_for(lambda: driver.buffer.text == edited + ghost, "Tab to insert the ghost")
        await driver.press(ENTER)
        await wait_for(lambda: driver.printed() == [edited + ghost], "the prompt on stdout")
        await driver.quit()
    assert client.state is ServerState.STOPPED


async def test_typing_a_mask_opens_a_menu_of_fillers_for_it(repl: ReplDriver) -> None:
    before = "a portrait of "
    await repl.type(before + "<mask>")  # "<mask>" is a word: the menu opens by itself
    state = await _wait_for_menu(repl)
    assert all(c.start_position == -len("<mask>") for c in state.completions)
    assert all(c.display_meta_text.startswith("fill") for c in state.completions)
    first = state.completions[0]
    await repl.press(DOWN)
    await wait_for(lambda: menu_index(repl) == 0, "the first filler")
    await repl.press(ENTER)
    await wait_for(lambda: repl.buffer.complete_state is None, "the menu to close")
    assert repl.buffer.text == before + first.text
    assert "<mask>" not in repl.buffer.text


async def test_the_toolbar_shows_the_lines_clip_tokens(repl: ReplDriver) -> None:
    def shown() -> str:
        return "".join(text for style, text, *_ in repl.repl._toolbar() if "tokens" in style)

    await repl.type("red cat")
    await wait_for(lambda: shown().strip() == "2/75", "2/75 in the toolbar")
    await repl.type(" BREAK dog")
    await wait_for(lambda: shown().strip() == "76/75", "76/75 once BREAK starts chunk 2")
    await repl.press(ESCAPE)  # the menu, if open
    await repl.press(ENTER)
    await wait_for(lambda: repl.printed() == ["red cat BREAK dog"], "the prompt on stdout")
    await wait_for(lambda: repl.buffer.text == "", "a new, empty line")
    assert shown() == ""  # not the printed line's count
