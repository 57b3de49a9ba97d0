"""Shared helpers for the REPL and client tests: a real prompt-ls on the default model."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompt_toolkit.input import PipeInput
from prompt_toolkit.output import DummyOutput

from client_tui.app import Repl, ReplOptions
from client_tui.lsp import PromptServerClient

REPO_ROOT = Path(__file__).resolve().parent.parent
# None: the client's own default, `python -m server` (what prompt-repl runs).
SERVER_COMMAND: list[str] | None = None
WAIT_S = 300.0  # a deadline for liveness only (server start-up took minutes on a loaded machine)
# The engine answers with what it has when its time budget (400 ms by default) runs out, which
# on a loaded 2-core machine can be nothing. Tests assert behaviour, so they give it longer,
# and keep expansions short so that explicit requests stay quick.
SETTINGS = {"model": "default", "timeBudgetMs": 5000, "maxExpansionTokens": 16}
SETTINGS_ARGS = ["--model", "default", "--time-budget-ms", "5000", "--max-expansion-tokens", "16"]

# What a terminal sends for each key.
TAB, ENTER, CTRL_RIGHT, CTRL_SPACE = "\t", "\r", "\x1b[1;5C", "\x00"
F2, DOWN, LEFT, BACKSPACE = "\x1bOQ", "\x1b[B", "\x1b[D", "\x7f"
ALT_RIGHT_BRACKET, ALT_LEFT_BRACKET = "\x1b]", "\x1b["  # Alt-[ is only told from CSI by a pause
CTRL_C, CTRL_D, ESCAPE = "\x03", "\x04", "\x1b"


def server_env(home: Path) -> dict[str, str]:
    """The test environment for a child server: this checkout, an empty store and history."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env["PROMPT_AUTOCOMPLETE_HOME"] = str(home)
    return env


def server_command_args() -> list[str]:
    """prompt-repl options that select the test's server command (none for the default)."""
    return [] if SERVER_COMMAND is None else ["--server-command", " ".join(SERVER_COMMAND)]


def make_client(home: Path, **kwargs: Any) -> PromptServerClient:
    return PromptServerClient(SETTINGS, command=SERVER_COMMAND, env=server_env(home), **kwargs)


async def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll until ``condition()`` is true; fail with ``what`` when the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_until_loaded(client: PromptServerClient) -> None:
    """The server has reported its model load, finished it, and its status says it serves."""
    await wait_for(lambda: client.progress_seen, "the model load to be reported")
    await client.wait_until_ready(WAIT_S)


class ReplDriver:
    """Runs a Repl on a pipe, types into it key by key, and reads what it printed."""

    def __init__(self, client: PromptServerClient, pipe: PipeInput, **options: Any) -> None:
        self.pipe = pipe
        self.stdout = io.StringIO()
        self.copied: list[str] = []
        self.repl = Repl(
            client,
            ReplOptions(**options),
            input=pipe,
            output=DummyOutput(),
            stdout=self.stdout,
            clipboard=self.copied.append,
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def buffer(self) -> Any:
        return self.repl.buffer

    @property
    def ghost(self) -> str | None:
        suggestion = self.buffer.suggestion
        return suggestion.text if suggestion else None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.repl.run())
        await wait_for(lambda: self.repl.session.app.is_running, "the prompt to run")

    async def type(self, text: str) -> None:
        """Characters one at a time, as a person types (all at once races the suggester)."""
        for char in text:
            self.pipe.send_text(char)
            await asyncio.sleep(0.01)

    async def press(self, key: str) -> None:
        self.pipe.send_text(key)
        await asyncio.sleep(0.05)

    async def wait_for_ghost(self) -> str:
        try:
            await wait_for(lambda: self.ghost, "ghost text")
        except AssertionError as error:
            raise AssertionError(f"{error}; the server said: {self.repl.lsp.notice!r}") from None
        assert self.ghost is not None
        return self.ghost

    def printed(self) -> list[str]:
        return self.stdout.getvalue().splitlines()

    async def quit(self) -> None:
        assert self.task is not None
        if not self.task.done():
            self.pipe.send_text(CTRL_D)
            await asyncio.wait_for(self.task, WAIT_S)
