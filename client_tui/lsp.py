"""A small async wrapper over pygls' LanguageClient that talks to prompt-ls like any editor.

It owns one in-memory document, keeps it in sync with full-text didChange, turns answers into
plain Python-index edits, cancels requests made for text the user has since changed (with
$/cancelRequest, so the server stops working on them), tracks $/progress while the model loads,
and restarts a server that dies, re-opening the document with the text the user has now.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import importlib.util
import itertools
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.io_ import run_async
from pygls.lsp.client import LanguageClient

from client_tui import __version__
from client_tui.textpos import changed_span, index_to_position, position_to_index

logger = logging.getLogger(__name__)

DOCUMENT_URI = "untitled:prompt-repl.prompt"
LANGUAGE_ID = "prompt"
EXPAND_COMMAND = "promptAutocomplete.expand"
TOKENS_COMMAND = "promptAutocomplete.tokens"
LEARN_COMMAND = "promptAutocomplete.learn"
STATUS_METHOD = "promptAutocomplete/status"
CLIENT_NAME = "prompt-repl"
# The server's model states (its status) past which nothing changes until a reload;
# "unknown": a server without the status method, followed by its $/progress alone.
SETTLED_STATES = ("ready", "failed", "unknown")
MODEL_STATE_POLL_S = 0.1


class LspError(Exception):
    """Base of everything a request to the server can fail with."""


class StaleRequest(LspError):
    """The text changed before the answer came; the request was cancelled on the server."""


class ServerUnavailable(LspError):
    """There is no working connection to the server (starting, restarting or dead)."""


class RequestFailed(LspError):
    """The server answered the request with an error."""


class ServerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` with ``new_text``: Python indices into the requested text."""

    start: int
    end: int
    new_text: str
    label: str = ""
    detail: str = ""
    filter_text: str = ""
    sort_text: str = ""


@dataclass
class Progress:
    """The latest state of one $/progress token (model loading or training)."""

    title: str = ""
    message: str = ""
    percentage: int | None = None
    done: bool = False

    def describe(self) -> str:
        parts = [self.title or "working"]
        if self.percentage:  # a 0 that never moves says less than nothing
            parts.append(f"{self.percentage}%")
        if self.message:
            parts.append(self.message)
        return " ".join(parts)


@dataclass
class _Pending:
    version: int | None  # the document version it answers for; None: never stale
    future: asyncio.Future[Any]
    client: LanguageClient


def default_server_command() -> list[str]:
    """The ``prompt-ls`` installed beside this interpreter; in a source checkout without the
    console script, the server package run as a module by this interpreter."""
    installed = shutil.which("prompt-ls", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "server"]


def default_server_env() -> dict[str, str]:
    """The current environment, plus PYTHONPATH for a source checkout that is not installed
    (for the module fallback of ``default_server_command``)."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("server")
    if spec is not None and spec.origin is not None:
        root = str(Path(spec.origin).resolve().parent.parent)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def _field(value: Any, name: str) -> Any:
    """Read a field of a $/progress value whether pygls structured it or left a dict."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


class PromptServerClient:
    """prompt-ls over stdio (a child process it starts) or TCP (a server someone else runs)."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        address: tuple[str, int] | None = None,
        text_provider: Callable[[], str] | None = None,
        on_update: Callable[[], None] = lambda: None,
        max_restarts: int = 3,
        restart_window_s: float = 60.0,
        request_timeout_s: float = 120.0,
    ) -> None:
        if command is not None and address is not None:
            raise ValueError("give a server command or an address, not both")
        self.settings = dict(settings)
        self._command = list(command) if command is not None else None
        if self._command is None and address is None:
            self._command = default_server_command()
        self._env = dict(env) if env is not None else default_server_env()
        self._address = address
        # The truth about the document's text (the REPL's buffer). Without one, each request
        # defines the text; with one, a request for any other text is stale by definition.
        self.text_provider = text_provider
        self.on_update = on_update
        self._max_restarts = max_restarts
        self._restart_window_s = restart_window_s
        self._request_timeout_s = request_timeout_s

        self.state = ServerState.STOPPED
        self.notice = ""  # the latest thing worth telling the user (a crash, a server message)
        self.server_info = ""
        self.model_state = ""  # the server's status "state", followed until it settles
        self.progress: dict[str | int, Progress] = {}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.cancels_sent = 0  # $/cancelRequest notifications: stale work the server was spared

        self._client: LanguageClient | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stop_reading = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._version = 0
        self._sent_text = ""
        self._incremental = False  # the server asked for range edits rather than full text
        self._restarts: collections.deque[float] = collections.deque()
        self._closing = False
        self._ready = asyncio.Event()  # initialized; set again after every (re)start

    # ----------------------------------------------------------------- state for the UI

    @property
    def server_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def loading(self) -> bool:
        """True while any $/progress the server began has not ended."""
        return any(not p.done for p in self.progress.values())

    @property
    def progress_seen(self) -> bool:
        return bool(self.progress)

    @property
    def model_settled(self) -> bool:
        """The server's model has settled (served, or failed) and no load is in progress."""
        return self.model_state in SETTLED_STATES and not self.loading

    def status_text(self) -> str:
        """One line for the toolbar: what the server is doing right now."""
        if self.state is ServerState.RUNNING and self.loading:
            active = [p for p in self.progress.values() if not p.done]
            return active[-1].describe()
        if self.state is ServerState.RUNNING and self.model_state == "failed":
            return "the model failed to load"
        if self.state is ServerState.RUNNING and self.model_state == "statistics":
            return "loading the model (the corpus statistics serve meanwhile)…"
        if self.state is ServerState.RUNNING and self.model_state not in SETTLED_STATES:
            return "loading the model…"
        if self.state is ServerState.RUNNING:
            return "ready"
        if self.state is ServerState.STARTING:
            return "starting prompt-ls…"
        if self.state is ServerState.RESTARTING:
            return "restarting prompt-ls…"
        if self.state is ServerState.FAILED:
            return f"suggestions are off: {self.notice or 'prompt-ls is not running'}"
        return "stopped"

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start (or connect to) the server and open the document; raises ServerUnavailable."""
        self._closing = False
        self.state = ServerState.STARTING
        self._changed()
        try:
            await self._connect()
        except ServerUnavailable as error:
            self.state = ServerState.FAILED
            self.notice = str(error)
            self._changed()
            raise

    async def stop(self, *, polite: bool = True) -> None:
        """Shut the server down politely (``shutdown``, then a kill if it lingers), or at
        once when it never answered; pending requests fail."""
        self._closing = True
        for task in list(self._tasks):
            if task.get_name() == "prompt-ls-recover":
                task.cancel()
        await self._disconnect(polite=polite)
        self.state = ServerState.STOPPED
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._changed()

    async def restart(self) -> None:
        """Replace the server with a fresh one, keeping the document's current text."""
        await self._disconnect(polite=True)
        self.state = ServerState.RESTARTING
        self._changed()
        await self._connect()

    async def wait_until_ready(self, timeout: float) -> None:
        """Wait for initialization, then until the server's model serves (or failed) and any
        loading progress it reports has ended."""
        deadline = time.monotonic() + timeout
        await asyncio.wait_for(self._ready.wait(), timeout)
        while not self.model_settled:
            if time.monotonic() > deadline:
                raise TimeoutError("the server is still loading its model")
            await asyncio.sleep(0.05)
            if self.state is not ServerState.RUNNING:
                raise ServerUnavailable(self.notice or "the server stopped while loading")

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _changed(self) -> None:
        try:
            self.on_update()
        except Exception:
            logger.exception("update callback failed")

    async def _connect(self) -> None:
        self._generation += 1
        generation = self._generation
        self._ready.clear()
        self.progress = {}
        self.model_state = ""
        client = LanguageClient(CLIENT_NAME, __version__)
        self._register_handlers(client)
        self._stop_reading = threading.Event()
        try:
            if self._command is not None:
                self._process = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=self._env,
                )
                assert self._process.stdout and self._process.stdin and self._process.stderr
                reader: asyncio.StreamReader = self._process.stdout
                client.protocol.set_writer(self._process.stdin)
                self._spawn(self._drain_stderr(self._process.stderr), "prompt-ls-stderr")
            else:
                assert self._address is not None
                reader, writer = await asyncio.open_connection(*self._address)
                client.protocol.set_writer(writer)
        except OSError as error:
            raise ServerUnavailable(f"cannot start prompt-ls: {error}") from error
        self._client = client
        reading = self._spawn(
            run_async(
                stop_event=self._stop_reading,
                reader=reader,
                protocol=client.protocol,
                logger=logger,
                error_handler=lambda error, source: logger.warning("protocol error: %s", error),
            ),
            "prompt-ls-reader",
        )
        self._spawn(self._watch(generation, reading), "prompt-ls-watch")
        try:
            # No deadline: a loaded machine can take minutes to import torch; a server that
            # dies meanwhile is noticed by the watcher, which fails this request.
            result = await self._send(
                client, types.INITIALIZE, self._initialize_params(), timeout=None
            )
        except LspError as error:
            await self._disconnect(polite=False)
            raise ServerUnavailable(self._death_reason("did not initialize")) from error
        sync = result.capabilities.text_document_sync
        if isinstance(sync, types.TextDocumentSyncOptions):
            sync = sync.change
        self._incremental = sync == types.TextDocumentSyncKind.Incremental
        if result.server_info is not None:
            self.server_info = " ".join(
                x for x in (result.server_info.name, result.server_info.version) if x
            )
        self._notify(client, types.INITIALIZED, types.InitializedParams())
        self._version = 1
        if self.text_provider is not None:
            self._sent_text = self.text_provider()
        self._notify(
            client,
            types.TEXT_DOCUMENT_DID_OPEN,
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=DOCUMENT_URI,
                    language_id=LANGUAGE_ID,
                    version=self._version,
                    text=self._sent_text,
                )
            ),
        )
        self.state = ServerState.RUNNING
        self._ready.set()
        self._changed()
        self._spawn(self._follow_model_state(self._generation), "prompt-ls-model-state")

    async def _follow_model_state(self, generation: int) -> None:
        """Ask the server's status until its model state settles. The load's $/progress
        begins only after the configuration round trip: until then nothing else says that
        the model is still loading."""
        while generation == self._generation and self.state is ServerState.RUNNING:
            try:
                state = str((await self.status()).get("state", "unknown"))
            except RequestFailed:
                state = "unknown"
            except LspError:
                return  # the connection went: the next one follows its own server
            if state != self.model_state:
                self.model_state = state
                self._changed()
            if state in SETTLED_STATES:
                return
            await asyncio.sleep(MODEL_STATE_POLL_S)

    def _initialize_params(self) -> types.InitializeParams:
        capabilities = types.ClientCapabilities(
            window=types.WindowClientCapabilities(
                work_done_progress=True,
                show_message=types.ShowMessageRequestClientCapabilities(),
            ),
            text_document=types.TextDocumentClientCapabilities(
                synchronization=types.TextDocumentSyncClientCapabilities(),
                completion=types.CompletionClientCapabilities(context_support=True),
                inline_completion=types.InlineCompletionClientCapabilities(),
            ),
            workspace=types.WorkspaceClientCapabilities(
                configuration=True,
                execute_command=types.ExecuteCommandClientCapabilities(),
            ),
            general=types.GeneralClientCapabilities(
                position_encodings=[types.PositionEncodingKind.Utf16]
            ),
        )
        return types.InitializeParams(
            capabilities=capabilities,
            process_id=os.getpid(),
            client_info=types.ClientInfo(name=CLIENT_NAME, version=__version__),
            initialization_options=self.settings,
        )

    def _register_handlers(self, client: LanguageClient) -> None:
        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
            """Taken and dropped: the toolbar counts the line's CLIP tokens itself (``tokens``),
            which is what the diagnostics say. Unhandled, pygls logs each one as a warning."""

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_progress_create(params: types.WorkDoneProgressCreateParams) -> None:
            self.progress[params.token] = Progress()
            self._changed()

        @client.feature(types.PROGRESS)
        def on_progress(params: types.ProgressParams) -> None:
            self._apply_progress(params.token, params.value)

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def on_show_message(params: types.ShowMessageParams) -> None:
            self.notice = params.message
            self._changed()

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def on_show_message_request(params: types.ShowMessageRequestParams) -> None:
            self.notice = params.message
            self._changed()

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def on_log_message(params: types.LogMessageParams) -> None:
            logger.info("prompt-ls: %s", params.message)

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def on_configuration(params: types.ConfigurationParams) -> list[Any]:
            return [self.settings for _ in params.items]

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def on_register_capability(params: types.RegistrationParams) -> None:
            return None

    def _apply_progress(self, token: str | int, value: Any) -> None:
        progress = self.progress.setdefault(token, Progress())
        kind = _field(value, "kind")
        for name in ("title", "message"):
            text = _field(value, name)
            if text:
                setattr(progress, name, str(text))
        percentage = _field(value, "percentage")
        if percentage is not None:
            progress.percentage = int(percentage)
        if kind == "end":
            progress.done = True
        self._changed()

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """Read the child's stderr so a chatty server never blocks on a full pipe."""
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)
                logger.debug("prompt-ls stderr: %s", text)

    async def _watch(self, generation: int, reading: asyncio.Task[Any]) -> None:
        """Notice the connection ending; unless we ended it, restart the server."""
        process = self._process
        waits: set[asyncio.Future[Any]] = {reading}
        if process is not None:
            waits.add(asyncio.ensure_future(process.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if self._closing or generation != self._generation:
            return
        connected = self.state is ServerState.RUNNING
        if process is not None and process.returncode is None:
            # A dying server closes its stdout just before it exits: give it a moment, so its
            # own exit code is reported; one that lives on after that is of no use any more.
            try:
                await asyncio.wait_for(process.wait(), 1.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            # Let the stderr reader collect the last words before reporting them.
            await asyncio.wait_for(self._stderr_done(), 0.5)
        reason = self._death_reason("stopped")
        logger.warning("%s", reason)
        self._fail_pending(ServerUnavailable(reason))
        if connected:  # otherwise the start in progress fails and its caller decides
            self._client = None
            self._ready.clear()
            self._spawn(self._recover(reason), "prompt-ls-recover")

    async def _stderr_done(self) -> None:
        for task in list(self._tasks):
            if task.get_name() == "prompt-ls-stderr":
                await task

    def _death_reason(self, what: str) -> str:
        process = self._process
        if process is not None and process.returncode is not None:
            reason = f"prompt-ls {what} (exit code {process.returncode})"
        elif process is not None:
            reason = f"prompt-ls {what}"
        else:
            reason = f"connection to prompt-ls {what}"
        if self.stderr_tail:
            reason += f": {self.stderr_tail[-1]}"
        return reason

    async def _recover(self, reason: str) -> None:
        while not self._closing:
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > self._restart_window_s:
                self._restarts.popleft()
            if len(self._restarts) >= self._max_restarts:
                self.state = ServerState.FAILED
                self.notice = f"{reason}; gave up after {self._max_restarts} restarts"
                self._changed()
                return
            self._restarts.append(now)
            self.state = ServerState.RESTARTING
            self.notice = f"{reason}; restarting"
            self._changed()
            await asyncio.sleep(0.2 * len(self._restarts))
            try:
                await self._connect()
            except ServerUnavailable as error:
                reason = str(error)
                continue
            self.notice = f"{reason}; restarted, your text is kept"
            self._changed()
            return

    async def _disconnect(self, *, polite: bool) -> None:
        self._generation += 1  # the watcher of the old connection must not restart it
        client, process = self._client, self._process
        self._client = None
        self._ready.clear()
        self._fail_pending(ServerUnavailable("the server is being stopped"))
        alive = process is None or process.returncode is None
        if client is not None and polite and alive:
            with contextlib.suppress(LspError, asyncio.TimeoutError):
                await self._send(client, types.SHUTDOWN, None, timeout=2.0)
                self._notify(client, types.EXIT, None)
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 3.0 if polite else 0.1)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        elif client is not None and isinstance(client.protocol.writer, asyncio.StreamWriter):
            client.protocol.writer.close()
        self._stop_reading.set()

    # ----------------------------------------------------------------- requests

    def sync(self, text: str) -> None:
        """Send the text if it changed; answers owed for older text are cancelled."""
        previous = self._sent_text
        if text == previous:
            return
        self._sent_text = text
        self._version += 1
        for msg_id, pending in list(self._pending.items()):
            if pending.version is not None and pending.version < self._version:
                self._cancel(msg_id, pending)
        client = self._client
        if client is None or self.state is not ServerState.RUNNING:
            return  # a (re)start opens the document with the text of that moment
        change: types.TextDocumentContentChangeEvent
        if self._incremental:
            start, end, replacement = changed_span(previous, text)
            change = types.TextDocumentContentChangePartial(
                range=types.Range(
                    start=index_to_position(previous, start),
                    end=index_to_position(previous, end),
                ),
                text=replacement,
            )
        else:
            change = types.TextDocumentContentChangeWholeDocument(text=text)
        self._notify(
            client,
            types.TEXT_DOCUMENT_DID_CHANGE,
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=DOCUMENT_URI, version=self._version
                ),
                content_changes=[change],
            ),
        )

    def _sync_for_request(self, text: str) -> None:
        if self.text_provider is not None and text != self.text_provider():
            raise StaleRequest("the text changed before the request was sent")
        self.sync(text)

    def _cancel(self, msg_id: int, pending: _Pending) -> None:
        self._pending.pop(msg_id, None)
        if not pending.future.done():
            pending.future.set_exception(StaleRequest(f"request {msg_id} is stale"))
        if pending.client is self._client:
            self._notify(pending.client, types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
            self.cancels_sent += 1

    @staticmethod
    def _notify(client: LanguageClient, method: str, params: Any) -> None:
        """Send a notification; a broken pipe is left for the watcher to report."""
        try:
            client.protocol.notify(method, params)
        except OSError as error:
            logger.warning("cannot send %s: %s", method, error)

    def _fail_pending(self, error: LspError) -> None:
        for msg_id, pending in list(self._pending.items()):
            self._pending.pop(msg_id, None)
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _request(self, method: str, params: Any, *, about_text: bool = True) -> Any:
        """Send a request; one ``about_text`` goes stale when the text changes."""
        client = self._client
        if client is None or self.state is not ServerState.RUNNING:
            raise ServerUnavailable(self.status_text())
        version = self._version if about_text else None
        return await self._send(
            client, method, params, version=version, timeout=self._request_timeout_s
        )

    async def _send(
        self,
        client: LanguageClient,
        method: str,
        params: Any,
        *,
        version: int | None = None,
        timeout: float | None,
    ) -> Any:
        """Send one request; stale, failed, late or dead-server answers raise an LspError."""
        loop = asyncio.get_running_loop()
        msg_id = next(self._ids)
        answer: asyncio.Future[Any] = loop.create_future()

        def deliver(reply: Future[Any]) -> None:
            if answer.done():
                return  # cancelled as stale: a late reply (or the -32800 error) is dropped
            if reply.cancelled():
                answer.set_exception(ServerUnavailable("request dropped"))
            elif (error := reply.exception()) is not None:
                answer.set_exception(RequestFailed(str(error)))
            else:
                answer.set_result(reply.result())

        def deliver_on_loop(reply: Future[Any]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(deliver, reply)

        self._pending[msg_id] = _Pending(version, answer, client)
        try:
            reply = client.protocol.send_request(method, params, msg_id=msg_id)
        except OSError as error:
            self._pending.pop(msg_id, None)
            raise ServerUnavailable(f"cannot reach prompt-ls: {error}") from error
        reply.add_done_callback(deliver_on_loop)
        try:
            return await asyncio.wait_for(answer, timeout)
        except asyncio.CancelledError:
            # Our caller gave up (e.g. the prompt closed): tell the server to stop too.
            if msg_id in self._pending:
                self._cancel(msg_id, self._pending[msg_id])
            raise
        except TimeoutError as error:
            raise RequestFailed(f"{method} timed out") from error
        finally:
            self._pending.pop(msg_id, None)

    async def inline(self, text: str, cursor: int, *, invoked: bool = False) -> list[Edit]:
        """Ghost-text candidates at ``cursor``, best first (alternatives when invoked)."""
        self._sync_for_request(text)
        trigger = (
            types.InlineCompletionTriggerKind.Invoked
            if invoked
            else types.InlineCompletionTriggerKind.Automatic
        )
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=DOCUMENT_URI),
            position=index_to_position(text, cursor),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
        result = await self._request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        edits = []
        for item in items:
            new_text = item.insert_text
            if isinstance(new_text, types.StringValue):
                new_text = new_text.value
            if item.range is None:
                start = end = cursor
            else:
                start = position_to_index(text, item.range.start)
                end = position_to_index(text, item.range.end)
            edits.append(Edit(start, end, new_text, filter_text=item.filter_text or ""))
        return edits

    async def complete(self, text: str, cursor: int) -> list[Edit]:
        """Menu items at ``cursor`` in the server's order (sortText, then as sent)."""
        self._sync_for_request(text)
        params = types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=DOCUMENT_URI),
            position=index_to_position(text, cursor),
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
        result = await self._request(types.TEXT_DOCUMENT_COMPLETION, params)
        items = result.items if isinstance(result, types.CompletionList) else result or []
        edits = []
        for item in items:
            edit = item.text_edit
            if isinstance(edit, types.InsertReplaceEdit):
                span, new_text = edit.replace, edit.new_text
            elif isinstance(edit, types.TextEdit):
                span, new_text = edit.range, edit.new_text
            else:
                span, new_text = None, item.insert_text or item.label
            start = cursor if span is None else position_to_index(text, span.start)
            end = cursor if span is None else position_to_index(text, span.end)
            edits.append(
                Edit(
                    start,
                    end,
                    new_text,
                    label=item.label,
                    detail=item.detail or "",
                    filter_text=item.filter_text or item.label,
                    sort_text=item.sort_text or "",
                )
            )
        order = {id(edit): rank for rank, edit in enumerate(edits)}
        return sorted(edits, key=lambda e: (e.sort_text, order[id(e)]))

    async def expand(self, text: str, n: int) -> list[str]:
        """n full prompts that continue ``text``, best first."""
        params = types.ExecuteCommandParams(command=EXPAND_COMMAND, arguments=[text, n])
        result = await self._request(types.WORKSPACE_EXECUTE_COMMAND, params)
        if not isinstance(result, list):
            return []
        return [str(item) for item in result if isinstance(item, str) and item.strip()]

    async def tokens(self, text: str) -> tuple[int, int]:
        """CLIP tokens of ``text`` as SD front ends count them, and the budget to show them
        against: the token limit, or whole 75-token chunks when there is none."""
        params = types.ExecuteCommandParams(command=TOKENS_COMMAND, arguments=[text])
        result = await self._request(types.WORKSPACE_EXECUTE_COMMAND, params)
        counted, chunks, limit = (_field(result, name) for name in ("tokens", "chunks", "limit"))
        if not isinstance(counted, int) or not isinstance(limit, int) or not chunks:
            raise RequestFailed(f"{TOKENS_COMMAND}: unexpected answer {result!r}")
        return counted, limit or 75 * len(chunks)

    async def learn(self, text: str) -> dict[str, Any]:
        """Teach the server finished prompts, one per line (its personal statistics); what it
        did with them (``learned``, ``duplicates``, ...)."""
        params = types.ExecuteCommandParams(command=LEARN_COMMAND, arguments=[text])
        return _plain(await self._request(types.WORKSPACE_EXECUTE_COMMAND, params))

    async def status(self) -> dict[str, Any]:
        """The server's model state and counters (``promptAutocomplete/status``)."""
        return _plain(await self._request(STATUS_METHOD, None, about_text=False))


def _plain(value: Any) -> Any:
    """An answer as plain dicts: pygls gives an unknown method's objects as named tuples."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
