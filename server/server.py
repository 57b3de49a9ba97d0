"""prompt-ls: the LSP wiring. Each handler is short; the logic lives in plain modules.

settings (validation), documents (positions and context), items (LSP item mapping),
worker (the model thread), progress ($/progress while loading), commands (argument checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import (
    FeatureRequestError,
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from server import __version__, commands, diagnostics, items, stdio
from server.documents import PromptContext, context_at
from server.engine.types import Cancelled
from server.progress import LoadProgress
from server.settings import SECTION, ServerSettings, Validated, build_settings, section_of
from server.worker import (
    EngineState,
    InFlight,
    Loading,
    ModelWorker,
    Priority,
    ProgressCallback,
    load_engine,
)

if TYPE_CHECKING:
    from model_store.personal import PersonalLayer
    from server.engine.kinds import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
STATUS_METHOD = "promptAutocomplete/status"
# ">": a <mask> was just typed; "<" and ":": a LoRA tag starts, its name or weight follows.
TRIGGER_CHARACTERS = [" ", ",", "(", ">", "<", ":"]
CONFIGURATION_TIMEOUT_S = 10.0
# The model's build (tenths of a second of CPU; seconds, holding the GIL in long stretches,
# for a model that needs torch) waits this long for the corpus statistics to answer a first
# keystroke, which it would otherwise delay.
FIRST_ANSWER_WAIT_S = 1.0
# CLIP's tokenizer loads once the model thread serves; a download or training run that keeps
# it from serving for longer than this does not hold the diagnostics back.
CLIP_WAIT_S = 5.0
EMPTY_COMPLETIONS = types.CompletionList(is_incomplete=True, items=[])
INTERNAL_ERROR = "internal error in prompt-ls (details in its log)"


class PromptProtocol(LanguageServerProtocol):
    """pygls' protocol plus the repairs the server needs.

    - ``$/cancelRequest`` also sets the request's stop flag: pygls cancels only the outer
      future of ``workspace/executeCommand``, which would leave the model thread running.
    - A request whose params cannot be read gets an InvalidParams answer; pygls only logs it,
      which leaves the client waiting forever.
    - A closed document's text is kept for the ``didClose`` handler (to learn its prompts):
      pygls drops the document before calling it.
    """

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Any:
        server = cast(PromptLanguageServer, self._server)
        document = self.workspace.text_documents.get(params.text_document.uri)
        if document is not None and server.settings.serves(document.language_id, document.path):
            server.closed_texts[params.text_document.uri] = document.source
        yield from super().lsp_text_document__did_close(params)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        super()._handle_cancel_notification(msg_id)
        cast(PromptLanguageServer, self._server).in_flight.cancel(msg_id)

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "method" in data and data.get("id") is not None:
                self._send_response(data["id"], error=error.to_response_error())
            raise

    def handle_message(self, message: Any) -> None:
        """After ``shutdown`` a request is answered InvalidRequest (the specification);
        pygls drops it silently, which leaves the client waiting."""
        method = getattr(message, "method", None)
        if self._shutdown and method not in (None, types.EXIT) and hasattr(message, "id"):
            error = JsonRpcInvalidRequest(f"the server is shut down; {method} refused")
            self._send_response(message.id, error=error.to_response_error())
            return
        super().handle_message(message)

    def _send_response(
        self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None
    ) -> None:
        """pygls puts a Python traceback in an internal error's message: the log keeps it,
        the client gets one line."""
        if error is not None and error.code == JsonRpcInternalError.CODE:
            log.error("internal error answering request %r: %s", msg_id, error.message)
            error = types.ResponseError(code=error.code, message=INTERNAL_ERROR)
        super()._send_response(msg_id, result, error)


@dataclass(frozen=True)
class PreparedRequest:
    """A request on a served document, with the version it was asked against."""

    uri: str
    version: int | None
    context: PromptContext


class PromptLanguageServer(LanguageServer):
    """Holds settings, the model worker and in-flight requests; handlers call into it."""

    def __init__(self) -> None:
        super().__init__(
            "prompt-ls",
            __version__,
            protocol_cls=PromptProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.settings = ServerSettings()
        self.worker = ModelWorker(loader=self._load_engine)
        self._personal: PersonalLayer | None = None
        self.closed_texts: dict[str, str] = {}  # uri -> text, until didClose learns it
        self._personal_lock = threading.Lock()
        self.in_flight = InFlight()
        self.initialization_options: Any = None
        self.client_shows_ghost_text = False  # it declared textDocument/inlineCompletion
        self._load_task: asyncio.Task[None] | None = None
        self.exit_code = 0  # 1 after `exit` without `shutdown`
        self._loads = 0
        self._answered = asyncio.Event()  # an engine answered a keystroke
        self._clip: asyncio.Task[None] | None = None  # loading CLIP's tokenizer
        self._diagnose_later: set[str] = set()  # documents edited before it loaded

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve stdio with frames that resynchronise after bad input (``server.stdio``)."""
        stdin, stdout = stdin or sys.stdin.buffer, stdout or sys.stdout.buffer
        self.exit_code = stdio.serve(self, stdin, stdout)

    def start_tcp(self, host: str, port: int) -> None:
        """TCP with the same resynchronising frames as stdio."""
        self.exit_code = stdio.serve_tcp(self, host, port)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside a request (a bad notification, say) go to the log and the client's
        log window; pygls pops them at the user, who can do nothing about them."""
        log.warning("%s: %s", getattr(source, "__name__", source), error)
        if source is FeatureRequestError:
            return  # the response carries it
        self.window_log_message(
            types.LogMessageParams(type=types.MessageType.Error, message=f"prompt-ls: {error}")
        )

    # -- settings ------------------------------------------------------------------------

    def _client_supports(self, field: str) -> bool:
        return bool(get_capability(self.client_capabilities, field, False))

    async def pull_configuration(self) -> Any:
        """The ``promptAutocomplete`` section from the client, or None if it has none."""
        if not self._client_supports("workspace.configuration"):
            return None
        params = types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        try:
            result = await asyncio.wait_for(
                self.workspace_configuration_async(params), CONFIGURATION_TIMEOUT_S
            )
        except Exception as exc:  # a slow or failing client keeps the other layers
            log.warning("workspace/configuration failed: %r", exc)
            return None
        return result[0] if result else None

    def _warn_about_settings(self, problems: Sequence[str]) -> None:
        self.window_show_message(
            types.ShowMessageParams(
                type=types.MessageType.Warning,
                message="Prompt autocompletion settings: "
                + "; ".join(problems)
                + " (the previous or default values stay in force)",
            )
        )

    def settings_from(self, configuration: Any) -> Validated:
        """The client's settings, layered over what it said at ``initialize``."""
        return build_settings(
            self.initialization_options, configuration, self.client_shows_ghost_text
        )

    async def apply_settings(self, validated: Validated) -> None:
        """Take new settings; report bad values; reload the model if it changed."""
        if validated.problems:
            self._warn_about_settings(validated.problems)
        previous = self.settings
        self.settings = validated.settings
        if (previous.token_limit, previous.language_ids, previous.file_patterns) != (
            self.settings.token_limit,
            self.settings.language_ids,
            self.settings.file_patterns,
        ):
            for uri in list(self.workspace.text_documents):
                self.publish_token_diagnostics(uri)
        reload = self.worker.state is EngineState.IDLE or (previous.model, previous.threads) != (
            self.settings.model,
            self.settings.threads,
        )
        if reload:
            self.worker.set_settings(self.settings.engine)
            self.start_loading()
            return
        refused = await self.worker.apply_settings(self.settings.engine)
        if refused:
            self._settings_refused(refused)

    def _settings_refused(self, reason: str) -> None:
        """The engine kept its settings: make the server's agree, and tell the user."""
        self.settings = dataclasses.replace(self.settings, engine=self.worker.settings)
        self._warn_about_settings([f"the model refused them: {reason}"])

    # -- personal statistics -------------------------------------------------------------

    def personal(self) -> PersonalLayer:
        """The user's prompts and their statistics, opened on first use (off the loop)."""
        with self._personal_lock:
            if self._personal is None:
                from model_store.personal import PersonalLayer

                self._personal = PersonalLayer.open()
            return self._personal

    def _load_engine(self, ref: str, threads: int | None, progress: ProgressCallback) -> Loading:
        """``worker.load_engine`` with the personal layer; a store where it cannot be opened
        (read-only, a broken database) serves without it rather than not at all."""
        try:
            personal = self.personal()
        except (OSError, sqlite3.Error) as exc:
            log.warning("personal statistics not used: %s", exc)
            personal = None
        return load_engine(ref, threads, progress, personal=personal)

    async def learn(self, text: str) -> dict[str, Any]:
        """Learn the prompts in ``text`` (one per line) unless the ``learn`` setting is off.

        The store's transaction runs on the default executor: it never waits for the model
        thread, and completions never wait for it.
        """
        if not self.settings.learn:
            return {"learned": 0, "disabled": True}
        from model_store.personal import split_lines

        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                None, lambda: self.personal().learn(split_lines(text))
            )
        except Exception as exc:  # a full disk, a locked or broken database
            log.exception("learning prompts failed")
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning,
                    message=f"Prompt autocompletion: could not learn prompts: {exc}",
                )
            )
            return {"learned": 0, "error": str(exc)}
        return dataclasses.asdict(found)

    # -- model loading -------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the configured model in the background; a newer load replaces a pending one."""
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        self._load_task = asyncio.create_task(
            self._load(self.settings.model, self.settings.threads)
        )

    async def _load(self, ref: str, threads: int | None) -> None:
        self._loads += 1
        progress = LoadProgress(
            self,
            f"promptAutocomplete/load/{self._loads}",
            enabled=self._client_supports("window.work_done_progress"),
        )
        progress.begin(f"Prompt model {ref}")
        try:
            outcome = await self.worker.load(
                ref, threads, progress.callback, before_build=self._before_model_build
            )
        except asyncio.CancelledError:
            progress.end("replaced by a newer model setting")
            raise
        except Exception as exc:  # corrupt checkpoint, missing model, bad weights, ...
            log.exception("loading model %r failed", ref)
            self.clip_counter()
            progress.end("failed")
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Error,
                    message=f"Prompt autocompletion: cannot load model {ref!r}: {exc}",
                )
            )
            return
        if not outcome.current:
            progress.end("replaced by a newer model setting")
            return
        progress.end("ready")
        log.info("model %r ready", ref)
        if outcome.notice:
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning,
                    message=f"Prompt autocompletion: {outcome.notice}",
                )
            )
        if outcome.settings_problem:
            self._settings_refused(outcome.settings_problem)

    async def _before_model_build(self) -> None:
        """Startup in order of need: while the statistics serve, the model's build waits for
        their first answer (or ``FIRST_ANSWER_WAIT_S``) and then for CLIP's tokenizer, so
        neither slows the first keystrokes; without statistics the model is what they need,
        and CLIP's tokenizer loads beside it."""
        if self.worker.state is not EngineState.STATISTICS:
            self.clip_counter()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), FIRST_ANSWER_WAIT_S)
        await self.clip_counter()

    # -- diagnostics ---------------------------------------------------------------------

    def clip_counter(self) -> asyncio.Task[None]:
        """CLIP's tokenizer, loaded once on a thread; then the diagnostics that waited for it
        are published."""
        if self._clip is None:
            self._clip = asyncio.create_task(self._load_clip())
        return self._clip

    async def _load_clip(self) -> None:
        await asyncio.to_thread(diagnostics.load_counter)
        waiting, self._diagnose_later = self._diagnose_later, set()
        for uri in sorted(waiting):
            self.publish_token_diagnostics(uri)

    # -- requests ------------------------------------------------------------------------

    def prepare(self, uri: str, position: types.Position) -> PreparedRequest | None:
        """The request's context, or None for documents this server does not serve."""
        document = self.workspace.text_documents.get(uri)
        if document is None or not self.settings.serves(document.language_id, document.path):
            return None
        return PreparedRequest(uri, document.version, context_at(document, position))

    def publish_token_diagnostics(self, uri: str) -> None:
        """The CLIP chunks of a served document (none for others, or once it is closed);
        once CLIP's tokenizer has loaded (``clip_counter``)."""
        if not diagnostics.counter_loaded():
            self._diagnose_later.add(uri)
            return
        document = self.workspace.text_documents.get(uri)
        served = document is not None and self.settings.serves(document.language_id, document.path)
        found = diagnostics.token_diagnostics(document, self.settings.token_limit) if served else []
        version = document.version if document is not None else None
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=found, version=version)
        )

    def _is_current(self, request: PreparedRequest) -> bool:
        document = self.workspace.text_documents.get(request.uri)
        return document is not None and document.version == request.version

    async def run_model(
        self,
        uri: str | None,
        job: Callable[[Engine, threading.Event], T],
        request: PreparedRequest | None = None,
        priority: Priority = Priority.KEYSTROKE,
    ) -> T | None:
        """``job`` on the model thread; None if not ready, stopped, stale or failed.

        A client cancel of this task propagates (pygls answers -32800); the engine is stopped.
        """
        if not self.worker.ready:
            return None
        with self.in_flight.track(self.protocol.msg_id, uri) as ticket:
            try:
                result = await self.worker.run(job, ticket.stop, priority)
            except Cancelled:
                return None  # stale, or a cancelled command (pygls already answered it)
            except Exception:
                log.exception("model request failed")
                return None
        if priority is Priority.KEYSTROKE:
            self._answered.set()
        if request is not None and not self._is_current(request):
            return None  # a newer edit arrived while the model worked
        return result

    @property
    def markdown_documentation(self) -> bool:
        formats = get_capability(
            self.client_capabilities,
            "text_document.completion.completion_item.documentation_format",
            [],
        )
        return types.MarkupKind.Markdown in formats

    def status(self) -> dict[str, Any]:
        stats = self.worker.stats
        personal = self._personal
        return {
            "personal": None
            if personal is None
            else {"counted": list(personal.counted()), "idle": personal.wait_counted(0)},
            "state": self.worker.state.value,
            "model": self.worker.model_ref,
            "statistics": self.worker.statistics,
            "error": self.worker.error,
            "busy": stats.busy,
            "pending": stats.pending,
            "completed": stats.completed,
            "cancelled": stats.cancelled,
            "failed": stats.failed,
        }

    def shutdown(self) -> None:
        self.in_flight.stop_all()
        self.worker.shutdown()
        if self._personal is not None:
            self._personal.close()
        super().shutdown()


SERVER = PromptLanguageServer()


@SERVER.feature(types.INITIALIZE)
def initialize(ls: PromptLanguageServer, params: types.InitializeParams) -> None:
    ls.initialization_options = params.initialization_options
    documents = params.capabilities.text_document
    ls.client_shows_ghost_text = documents is not None and documents.inline_completion is not None
    if ls.settings_from(None).settings.model == "default":  # the model the client will likely set
        ls.worker.warm_up()


@SERVER.feature(types.INITIALIZED)
async def initialized(ls: PromptLanguageServer, params: types.InitializedParams) -> None:
    asyncio.get_running_loop().call_later(CLIP_WAIT_S, ls.clip_counter)
    configuration = await ls.pull_configuration()
    await ls.apply_settings(ls.settings_from(configuration))


@SERVER.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(
    ls: PromptLanguageServer, params: types.DidChangeConfigurationParams
) -> None:
    configuration = await ls.pull_configuration()
    if configuration is None:  # clients without workspace/configuration push the settings
        configuration = section_of(params.settings)
    await ls.apply_settings(ls.settings_from(configuration))


@SERVER.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: PromptLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.publish_token_diagnostics(params.text_document.uri)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: PromptLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.in_flight.document_changed(params.text_document.uri)
    ls.publish_token_diagnostics(params.text_document.uri)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CLOSE)
async def did_close(ls: PromptLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    """A closed prompt document's lines are the user's prompts (each distinct line once)."""
    ls.in_flight.document_changed(params.text_document.uri)
    ls.publish_token_diagnostics(params.text_document.uri)
    text = ls.closed_texts.pop(params.text_document.uri, None)
    if text is not None:
        await ls.learn(text)


@SERVER.feature(types.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: PromptLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    """A saved prompt document's lines are the user's prompts (each distinct line once)."""
    document = ls.workspace.text_documents.get(params.text_document.uri)
    if document is not None and ls.settings.serves(document.language_id, document.path):
        await ls.learn(document.source)


@SERVER.feature(
    types.TEXT_DOCUMENT_COMPLETION,
    types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS),
)
async def completion(
    ls: PromptLanguageServer, params: types.CompletionParams
) -> types.CompletionList:
    request = ls.prepare(params.text_document.uri, params.position)
    if request is None:
        return EMPTY_COMPLETIONS
    context, limit = request.context, ls.settings.engine.max_items
    suggestions = await ls.run_model(
        request.uri,
        lambda engine, stop: engine.complete(context.text, context.cursor, limit=limit, stop=stop),
        request,
    )
    if not suggestions:
        return EMPTY_COMPLETIONS
    found = items.completion_items(
        suggestions, context, markdown=ls.markdown_documentation, limit=limit
    )
    return types.CompletionList(is_incomplete=True, items=found)


@SERVER.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: PromptLanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    request = ls.prepare(params.text_document.uri, params.position)
    if request is None:
        return types.InlineCompletionList(items=[])
    context = request.context
    explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    suggestions = await ls.run_model(
        request.uri,
        lambda engine, stop: engine.inline(
            context.text, context.cursor, explicit=explicit, stop=stop
        ),
        request,
    )
    limit = ls.settings.engine.max_items if explicit else 1
    return types.InlineCompletionList(
        items=items.inline_items(suggestions or [], context, limit=limit)
    )


@SERVER.command(commands.EXPAND)
async def expand(ls: PromptLanguageServer, *arguments: Any) -> list[str]:
    try:
        text, n = commands.expand_arguments(arguments)
    except commands.BadArguments as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    expansions = await ls.run_model(
        None, lambda engine, stop: engine.expand(text, n, stop=stop), priority=Priority.EXPANSION
    )
    return list(expansions or [])[:n]


@SERVER.command(commands.TOKENS)
async def tokens(ls: PromptLanguageServer, *arguments: Any) -> dict[str, Any]:
    """CLIP tokens as A1111's counter shows them, tokens per 75-token chunk, and the limit."""
    try:
        text = commands.tokens_arguments(arguments)
    except commands.BadArguments as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    await ls.clip_counter()
    from server.engine import clip_tokens

    counted = clip_tokens.budget(text)
    return {
        "tokens": counted.tokens,
        "chunks": counted.chunk_tokens,
        "limit": ls.settings.token_limit,
    }


@SERVER.command(commands.LEARN)
async def learn(ls: PromptLanguageServer, *arguments: Any) -> dict[str, Any]:
    try:
        text = commands.learn_arguments(arguments)
    except commands.BadArguments as exc:
        raise JsonRpcInvalidParams(str(exc)) from None
    return await ls.learn(text)


@SERVER.feature(STATUS_METHOD)
def status(ls: PromptLanguageServer, params: Any) -> dict[str, Any]:
    """Model state and model-thread counters, for clients' status bars (and tests)."""
    return ls.status()


@SERVER.feature(types.SHUTDOWN)
def shutdown(ls: PromptLanguageServer, params: Any) -> None:
    ls.in_flight.stop_all()
