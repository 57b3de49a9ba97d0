"""The REPL: a PromptSession wired to prompt-ls through PromptServerClient."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.shortcuts import CompleteStyle
from prompt_toolkit.styles import Style

from client_tui.keys import build_key_bindings
from client_tui.lsp import LspError, PromptServerClient, ServerState, ServerUnavailable
from client_tui.suggest import (
    AlternativeCycler,
    LspAutoSuggest,
    LspCompleter,
    expansion_completions,
    menu_item_selected,
    show_menu,
)

MESSAGE_SECONDS = 8.0

STYLE = Style.from_dict(
    {
        "prompt": "ansicyan bold",
        "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
        "bottom-toolbar.status": "bold",
        "bottom-toolbar.tokens": "#87d7ff",
        "bottom-toolbar.message": "#ffd75f",
        "bottom-toolbar.keys": "#8a8a8a",
    }
)
TOOLBAR_KEYS = "Tab accept · C-→ word · M-] M-[ alternatives · C-Space menu · F2 expand · C-D quit"


def osc52(text: str) -> str:
    """The terminal escape that puts ``text`` on the system clipboard (OSC 52)."""
    return "\x1b]52;c;" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "\x07"


def copy_through_terminal(text: str) -> None:
    """Send OSC 52 to the terminal itself (/dev/tty, else stderr), never to stdout."""
    sequence = osc52(text)
    try:
        with open("/dev/tty", "w", encoding="utf-8") as tty:
            tty.write(sequence)
    except OSError:
        sys.stderr.write(sequence)
        sys.stderr.flush()


@dataclass
class ReplOptions:
    expansions: int = 4
    copy: bool = False
    history_file: Path | None = None  # None: history lives only as long as the process
    debounce_s: float = 0.06
    erase_when_done: bool = False  # erase the input line once printed (stdout is the screen)
    learn: bool = True  # the server learns each finished prompt (personal statistics)


class Repl:
    """Reads prompts with ghost text, a completion menu and expansions; prints each one."""

    def __init__(
        self,
        lsp: PromptServerClient,
        options: ReplOptions | None = None,
        *,
        input: Input | None = None,
        output: Output | None = None,
        stdout: TextIO | None = None,
        clipboard: Callable[[str], None] = copy_through_terminal,
    ) -> None:
        self.lsp = lsp
        self.options = options or ReplOptions()
        self.stdout = stdout or sys.stdout
        self._clipboard = clipboard
        self.suggester = LspAutoSuggest(lsp, self.options.debounce_s)
        self.completer = LspCompleter(lsp, self.options.debounce_s)
        self.cycler = AlternativeCycler(lsp, self.suggester)
        self._message = ""
        self._message_time = 0.0
        self._last_notice = lsp.notice
        self._was_serving = False
        self._tokens = ""  # "63/75": the line's CLIP tokens and budget, from the server
        self.session: PromptSession[str] = PromptSession(
            message=[("class:prompt", "prompt> ")],
            auto_suggest=self.suggester,
            completer=self.completer,
            complete_while_typing=True,
            complete_style=CompleteStyle.COLUMN,
            history=self._history(),
            bottom_toolbar=self._toolbar,
            key_bindings=build_key_bindings(
                cycle=self.cycle, expand=self.expand, open_menu=self.open_menu
            ),
            style=STYLE,
            input=input,
            output=output,
            erase_when_done=self.options.erase_when_done,
            reserve_space_for_menu=6,
        )
        buffer = self.buffer
        buffer.on_text_changed += self._on_text_changed
        buffer.on_cursor_position_changed += self._on_cursor_moved
        lsp.text_provider = lambda: self.buffer.text
        lsp.on_update = self._on_server_update

    @property
    def buffer(self) -> Buffer:
        return self.session.default_buffer

    def _history(self) -> History:
        path = self.options.history_file
        if path is None:
            return InMemoryHistory()
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))

    # ----------------------------------------------------------------- running

    async def run(self) -> None:
        """Read prompts until Ctrl-D; starts (and stops) the server unless it already runs."""
        owns_server = self.lsp.state is ServerState.STOPPED
        starting = asyncio.ensure_future(self._start_server()) if owns_server else None
        try:
            while True:
                self._tokens = ""  # a new line: the last one's count would stand (a reset
                # buffer fires no text event)
                try:
                    text = await self.session.prompt_async()
                except KeyboardInterrupt:
                    continue  # Ctrl-C: the line is cleared, the REPL goes on
                except EOFError:
                    break
                self.suggester.forget()
                if text.strip():
                    self.emit(text)
                    if self.options.learn:
                        await self._learn(text)
        finally:
            if starting is not None:
                starting.cancel()
                await self.lsp.stop()

    async def _start_server(self) -> None:
        try:
            await self.lsp.start()
        except ServerUnavailable as error:
            self.say(str(error))

    async def _learn(self, text: str) -> None:
        """Learning is a convenience: a server that cannot take it costs a message, no more."""
        try:
            await self.lsp.learn(text)
        except LspError as error:
            self.say(f"not learned: {error}")

    def emit(self, text: str) -> None:
        """The REPL's only output on stdout: the finished prompt, one line."""
        print(text.replace("\n", " "), file=self.stdout, flush=True)
        if self.options.copy:
            self._clipboard(text)

    # ----------------------------------------------------------------- buffer events

    def _on_text_changed(self, buffer: Buffer) -> None:
        self.lsp.sync(buffer.text)
        app = self.session.app
        if app.is_running:
            app.create_background_task(self._count_tokens(buffer.text))
            # prompt-toolkit asks for ghost text only after insertions; ask after deletions too.
            app.create_background_task(self._suggest_after_change())

    async def _suggest_after_change(self) -> None:
        if menu_item_selected(self.buffer):
            return  # walking the menu: a ghost would fight Tab for the next item
        await self.buffer._async_suggester()  # the buffer's own guarded runner

    async def _count_tokens(self, text: str) -> None:
        """Refresh the toolbar's token count; it shows nothing while the server cannot say."""
        try:
            counted, budget = await self.lsp.tokens(text)
        except LspError:
            counted = budget = None
        if self.buffer.text != text:
            return  # a newer edit asked already
        self._tokens = "" if counted is None or not text else f"{counted}/{budget}"
        self.session.app.invalidate()

    def _on_cursor_moved(self, buffer: Buffer) -> None:
        # Editing clears the suggestion before the cursor event fires, so a suggestion still
        # present here means the cursor moved on its own: the ghost no longer applies.
        if buffer.suggestion is not None:
            buffer.suggestion = None
            self.suggester.forget()

    def _on_server_update(self) -> None:
        if self.lsp.notice != self._last_notice:
            self._last_notice = self.lsp.notice
            self.say(self.lsp.notice)
        serving = self.lsp.state is ServerState.RUNNING and not self.lsp.loading
        app = self.session.app
        if serving and not self._was_serving and app.is_running:
            # The model just became available (or the server came back): suggest for what
            # the user typed meanwhile.
            app.create_background_task(self._suggest_after_change())
        self._was_serving = serving
        if app.is_running:
            app.invalidate()

    # ----------------------------------------------------------------- actions

    def say(self, message: str) -> None:
        """Show a message in the toolbar for a few seconds."""
        self._message, self._message_time = message, time.monotonic()
        app = self.session.app
        if app.is_running:
            app.invalidate()
            asyncio.get_running_loop().call_later(MESSAGE_SECONDS + 0.1, app.invalidate)

    async def cycle(self, buffer: Buffer, step: int) -> None:
        """Alt-] / Alt-[ handler."""
        if self.cycler.text != buffer.text:
            self.say("fetching alternatives…")
        try:
            shown = await self.cycler.cycle(buffer, step)
        except LspError as error:
            self.say(f"no alternatives: {error}")
            return
        self.say("" if shown else "no alternatives here")

    async def expand(self, buffer: Buffer) -> None:
        """F2 handler: fetch full expansions and offer them as a menu replacing the line."""
        text = buffer.text
        if not text.strip():
            self.say("type an idea first, then expand it")
            return
        buffer.cursor_position = len(text)
        self.say("expanding…")
        try:
            expansions = await self.lsp.expand(text, self.options.expansions)
        except LspError as error:
            self.say(f"expand failed: {error}")
            return
        if buffer.text != text:
            return
        if not expansions:
            self.say("no expansions" + (" yet: the model is loading" if self.lsp.loading else ""))
            return
        self.say("")
        document = buffer.document
        show_menu(buffer, document, expansion_completions(document, expansions))

    async def open_menu(self, buffer: Buffer) -> None:
        """Ctrl-Space handler: every item the server has at the cursor, next phrases included."""
        document = buffer.document
        completions = await self.completer.fetch(document, explicit=True)
        if not completions and buffer.document == document:
            self.say("no completions here" + (" yet" if self.lsp.loading else ""))
        show_menu(buffer, document, completions)

    # ----------------------------------------------------------------- toolbar

    def _toolbar(self) -> StyleAndTextTuples:
        parts: StyleAndTextTuples = [("class:bottom-toolbar.status", f" {self.lsp.status_text()}")]
        if self._tokens:
            parts.append(("class:bottom-toolbar.tokens", f"  {self._tokens}"))
        message = self._message
        if message and time.monotonic() - self._message_time > MESSAGE_SECONDS:
            message = self._message = ""
        position = self.cycler.position(self.buffer)
        if not message and position is not None:
            message = f"alternative {position[0]}/{position[1]}"
        if message:
            parts.append(("class:bottom-toolbar.message", f"  {message}"))
        parts.append(("class:bottom-toolbar.keys", f"  {TOOLBAR_KEYS}"))
        return parts
