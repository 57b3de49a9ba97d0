"""Drive ``prompt-ls`` over stdio the way an editor does, for KSR, latency and cold start.

One document, one line. Every keystroke is a full-text ``didChange`` (what a client sends to
a server that asks for full sync, and valid for an incremental one too), then
``textDocument/completion`` and ``textDocument/inlineCompletion`` at the end of the line,
one after the other, each timed from send to reply. Positions are UTF-16 code units, as LSP
specifies unless another encoding is negotiated.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from benchmarks.data import REPO_ROOT
from benchmarks.ksr import MENU_SIZE, MenuItem

URI = "untitled:benchmark-prompt.txt"
LANGUAGE_ID = "plaintext"
SERVER_COMMAND = (sys.executable, "-m", "server")
T = TypeVar("T")


class ServerUnavailable(Exception):
    """prompt-ls cannot be started here; the message says why."""


def server_available() -> str | None:
    """None when ``python -m server`` can be run from this checkout, else the reason."""
    try:
        found = importlib.util.find_spec("server.__main__")
    except ImportError as exc:
        return f"cannot import the server package ({exc})"
    if found is None:
        return "server/__main__.py is missing: the language server is not on this branch yet"
    return None


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def python_index(text: str, units: int) -> int:
    """The str index of a UTF-16 offset into ``text`` (clamped to the text)."""
    count = 0
    for index, char in enumerate(text):
        if count >= units:
            return index
        count += 2 if ord(char) > 0xFFFF else 1
    return len(text)


def _end_position(text: str) -> types.Position:
    return types.Position(line=0, character=utf16_length(text))


def menu_from_completion(text: str, result: object) -> list[MenuItem]:
    """The first ``MENU_SIZE`` items in the server's sort order as (start, new_text)."""
    if result is None:
        return []
    items = list(result.items if isinstance(result, types.CompletionList) else result)
    items.sort(key=lambda item: item.sort_text or item.label)
    menu: list[MenuItem] = []
    for item in items[:MENU_SIZE]:
        edit = item.text_edit
        if isinstance(edit, types.InsertReplaceEdit):
            span, new_text = edit.replace, edit.new_text
        elif isinstance(edit, types.TextEdit):
            span, new_text = edit.range, edit.new_text
        else:  # no edit: the client replaces the word before the cursor
            word = len(text) - len(text.split(" ")[-1])
            menu.append((word, item.insert_text or item.label))
            continue
        start = python_index(text, span.start.character)
        end = python_index(text, span.end.character)
        menu.append((start, new_text + text[end:]))
    return menu


def ghost_from_inline(text: str, result: object) -> str:
    """What the first inline item appends to the line; nothing if it rewrites typed text."""
    if result is None:
        return ""
    items = list(result.items if isinstance(result, types.InlineCompletionList) else result)
    if not items:
        return ""
    item = items[0]
    insert = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    start = end = len(text)
    if item.range is not None:
        start = python_index(text, item.range.start.character)
        end = python_index(text, item.range.end.character)
    line = text[:start] + insert + text[end:]
    return line[len(text) :] if line.startswith(text) else ""


def _client_capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(snippet_support=False)
            ),
            inline_completion=types.InlineCompletionClientCapabilities(),
        ),
        workspace=types.WorkspaceClientCapabilities(configuration=True),
    )


class LspDriver:
    """One prompt-ls process and one open document, timed per request kind (seconds)."""

    def __init__(
        self,
        command: Sequence[str] = SERVER_COMMAND,
        log_path: Path | None = None,
        initialization_options: Any = None,
        environment: dict[str, str | None] | None = None,
    ) -> None:
        """``environment``: variables for the server on top of ours (None removes one)."""
        self.command = list(command)
        self.environment = environment or {}
        self.log_path = log_path
        self.initialization_options = initialization_options
        self.client = LanguageClient("prompt-autocompletion-benchmarks", "1")
        self.latencies: dict[str, list[float]] = {"completion": [], "inline": []}
        self.spawned_at = 0.0
        self.initialize_seconds = 0.0
        self.pid = 0
        self._version = 0
        self._rss_peak = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._answer_server_requests()

    def _answer_server_requests(self) -> None:
        """Reply like a minimal editor: no settings of its own, progress tokens accepted."""
        client = self.client

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def configuration(params: types.ConfigurationParams) -> list[None]:
            return [None for _ in params.items]

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def progress_create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(params: types.RegistrationParams) -> None:
            return None

        for method in (
            types.WINDOW_LOG_MESSAGE,
            types.WINDOW_SHOW_MESSAGE,
            types.PROGRESS,
            types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
        ):
            client.feature(method)(lambda params: None)

    async def start(self) -> float:
        """Spawn and initialize; returns seconds from spawn to the initialize reply."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        for name, value in self.environment.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        self.spawned_at = time.perf_counter()
        await self.client.start_io(*self.command, env=env, cwd=str(REPO_ROOT))
        process = self.client._server  # pygls keeps the process private; we need its pid
        if process is None:
            raise ServerUnavailable("the server process did not start")
        self.pid = process.pid
        self._tasks.append(asyncio.create_task(self._drain_stderr(process.stderr)))
        self._tasks.append(asyncio.create_task(self._watch_rss()))
        try:
            await asyncio.wait_for(
                self.client.initialize_async(
                    types.InitializeParams(
                        process_id=os.getpid(),
                        root_uri=None,
                        capabilities=_client_capabilities(),
                        initialization_options=self.initialization_options,
                    )
                ),
                timeout=120,
            )
        except (TimeoutError, RuntimeError) as exc:
            raise ServerUnavailable(f"initialize failed: {exc!r}; see {self.log_path}") from exc
        self.initialize_seconds = time.perf_counter() - self.spawned_at
        self.client.initialized(types.InitializedParams())
        return self.initialize_seconds

    async def _drain_stderr(self, stream: asyncio.StreamReader | None) -> None:
        """Keep the server's stderr pipe from filling (which would block it); keep a log."""
        if stream is None:
            return
        sink = self.log_path.open("ab") if self.log_path else None
        try:
            while chunk := await stream.read(65536):
                if sink:
                    sink.write(chunk)
        finally:
            if sink:
                sink.close()

    async def _watch_rss(self) -> None:
        """Fallback for peak RSS where /proc's VmHWM is not available."""
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.pid)
            while True:
                self._rss_peak = max(self._rss_peak, process.memory_info().rss)
                await asyncio.sleep(0.05)

    def peak_rss_bytes(self) -> int:
        """The kernel's high-water mark of the server's resident memory (sampled if not Linux)."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self._rss_peak

    def resident_mb(self) -> dict[str, float]:
        """The server's resident memory now, split as the kernel counts it (Linux only).

        ``file`` is mostly the memory-mapped word statistics: clean page-cache pages shared
        with every process that maps them, which the kernel may drop and read back at will;
        ``anonymous`` is memory the server alone holds.
        """
        found: dict[str, float] = {}
        names = {"RssAnon:": "anonymous", "RssFile:": "file", "RssShmem:": "shared"}
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                field = line.split()
                if field and field[0] in names:
                    found[names[field[0]]] = round(int(field[1]) / 1024, 1)
        return found

    def open(self, text: str) -> None:
        self._version = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=URI, language_id=LANGUAGE_ID, version=self._version, text=text
                )
            )
        )

    def change(self, text: str) -> None:
        self._version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=self._version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    async def completion(self, text: str) -> list[MenuItem]:
        began = time.perf_counter()
        result = await self.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=_end_position(text),
                context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
            )
        )
        self.latencies["completion"].append(time.perf_counter() - began)
        return menu_from_completion(text, result)

    async def inline(self, text: str) -> str:
        began = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=_end_position(text),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        self.latencies["inline"].append(time.perf_counter() - began)
        return ghost_from_inline(text, result)

    async def keystroke(self, text: str) -> tuple[str, list[MenuItem]]:
        """didChange to ``text``, then completion and inline completion at its end."""
        self.change(text)
        menu = await self.completion(text)
        ghost = await self.inline(text)
        return ghost, menu

    async def first_completion_seconds(self, text: str, timeout: float = 120.0) -> float:
        """Seconds from spawn until a completion request at the end of ``text`` is non-empty."""
        deadline = time.perf_counter() + timeout
        self.change(text)
        while time.perf_counter() < deadline:
            if await self.completion(text):
                return time.perf_counter() - self.spawned_at
            await asyncio.sleep(0.05)
        raise ServerUnavailable(f"no completion within {timeout:.0f} s of spawning")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_async(None), timeout=10)
            self.client.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), timeout=10)
        process = self.client._server
        if process is not None and process.returncode is None:
            process.kill()
        for task in self._tasks:
            task.cancel()


class LoopThread:
    """An event loop on its own thread, so synchronous code (the KSR simulator) can await."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class LspSystem:
    """KSR through a running server: each state is a keystroke as an editor would send it."""

    def __init__(self, driver: LspDriver, runner: LoopThread, name: str) -> None:
        self.driver = driver
        self.runner = runner
        self.name = name

    def suggest(self, typed: str) -> tuple[str, list[MenuItem]]:
        return self.runner.run(self.driver.keystroke(typed), timeout=60)
