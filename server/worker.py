"""The one thread that touches the model, and the bookkeeping that lets requests stop it.

Model calls take tens to hundreds of milliseconds and torch is not safe to drive from several
threads at once, so every call (loading included) runs on one dedicated single-thread executor,
never on pygls' own pool (which also reads stdin). A request's ``threading.Event`` is set when
the client cancels it or edits its document; the engine checks it between decoding steps and
raises ``Cancelled``, which frees the thread for the next request.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from server.engine.kinds import engine_for
from server.engine.types import Cancelled, EngineSettings

if TYPE_CHECKING:
    from model_store.personal import PersonalLayer
    from server.engine.kinds import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
ProgressCallback = Callable[[str, "float | None"], None]


class Loader(Protocol):
    def __call__(self, ref: str, threads: int | None, progress: ProgressCallback) -> Engine: ...


def load_engine(
    ref: str,
    threads: int | None,
    progress: ProgressCallback,
    personal: PersonalLayer | None = None,
) -> Engine:
    """Resolve ``ref`` through the model store (may download or train), then load the engine
    for its kind, with the word statistics of its training corpus when they were built
    (``prompt-models stats``), and the user's ``personal`` statistics.

    The engine starts with default settings: the user's are applied afterwards, so settings
    this model cannot take (too long an expansion for its context, say) are reported and
    dropped instead of failing the load.
    """
    # Imported here, on the model thread: the store's dependencies (filelock, hashing) took
    # a tenth of a second that `initialize` would otherwise wait for.
    from model_store.store import ModelStore

    store = ModelStore()
    checkpoint = store.resolve(ref, progress=progress)
    progress(f"loading model {checkpoint.name}", None)
    word_stats = store.word_stats(checkpoint) if checkpoint.kind == "causal-lm" else None
    if checkpoint.kind == "causal-lm" and word_stats is None:
        log.warning(
            "no corpus statistics for %s (or built by an older version): completions come from "
            "the model alone; `prompt-models stats --data TRAINING_CORPUS` builds them",
            checkpoint.name,
        )
    # The engine's module is imported on the model thread: torch and transformers take
    # seconds to import, and the server should answer `initialize` without waiting for them.
    return engine_for(
        checkpoint.kind, checkpoint.path, threads, word_stats=word_stats, personal=personal
    )


class EngineState(enum.Enum):
    IDLE = "idle"  # no model requested yet
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class LoadOutcome:
    current: bool  # False: a newer load replaced this one before it finished
    settings_problem: str | None = None  # why the new engine refused the user's settings


@dataclass
class Ticket:
    """One request's claim on the model thread."""

    uri: str | None
    stop: threading.Event = field(default_factory=threading.Event)


class InFlight:
    """Requests whose model work may still run, by request id and by document."""

    def __init__(self) -> None:
        self._tickets: dict[int, Ticket] = {}
        self._by_request: dict[Any, Ticket] = {}

    @contextmanager
    def track(self, request_id: Any, uri: str | None) -> Iterator[Ticket]:
        ticket = Ticket(uri=uri)
        self._tickets[id(ticket)] = ticket
        if request_id is not None:
            self._by_request[request_id] = ticket
        try:
            yield ticket
        finally:
            self._tickets.pop(id(ticket), None)
            if request_id is not None and self._by_request.get(request_id) is ticket:
                del self._by_request[request_id]

    def cancel(self, request_id: Any) -> None:
        """The client sent ``$/cancelRequest``."""
        ticket = self._by_request.get(request_id)
        if ticket is not None:
            ticket.stop.set()

    def document_changed(self, uri: str) -> None:
        """A newer edit makes every pending answer for ``uri`` useless: stop them."""
        for ticket in list(self._tickets.values()):
            if ticket.uri == uri:
                ticket.stop.set()

    def stop_all(self) -> None:
        for ticket in list(self._tickets.values()):
            ticket.stop.set()


@dataclass
class WorkerStats:
    """Counts a client (or a test) can read to see what the model thread did."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    busy: bool = False  # a job is running on the model thread
    pending: int = 0  # requests waiting for the model thread, the running one included


class ModelWorker:
    """Owns the engine; runs loads and requests one at a time on its own thread."""

    def __init__(self, loader: Loader = load_engine) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt-model")
        self._loader = loader
        self._engine: Engine | None = None
        self._settings = EngineSettings()  # what the user asked for, for every engine
        self._generation = 0
        self.state = EngineState.IDLE
        self.model_ref: str | None = None
        self.error: str | None = None
        self.stats = WorkerStats()

    @property
    def ready(self) -> bool:
        return self._engine is not None

    @property
    def working(self) -> bool:
        """A load or a job is running on the model thread (and cannot be interrupted)."""
        return self.stats.busy or self.state is EngineState.LOADING

    @property
    def settings(self) -> EngineSettings:
        """The settings in force (or to be applied by the load in progress)."""
        return self._settings

    def set_settings(self, settings: EngineSettings) -> None:
        """Settings for the next engine that loads."""
        self._settings = settings

    async def apply_settings(self, settings: EngineSettings) -> str | None:
        """Give the current engine new settings; its reason if it refused them.

        A refusal keeps the previous settings. Runs on the model thread, in order with the
        requests before it.
        """
        previous, self._settings = self._settings, settings
        if self._engine is None:
            return None  # the load in progress applies them
        loop = asyncio.get_running_loop()
        refused = await loop.run_in_executor(self._executor, self._apply_job, settings)
        if refused is not None and self._settings is settings:
            self._settings = previous
        return refused

    def _apply_job(self, settings: EngineSettings) -> str | None:
        engine = self._engine
        if engine is None:
            return None
        try:
            engine.update_settings(settings)
        except ValueError as exc:
            return str(exc)
        return None

    async def load(self, ref: str, threads: int | None, progress: ProgressCallback) -> LoadOutcome:
        """Replace the engine with ``ref``'s. Requests answer empty meanwhile.

        Raises whatever the store or the engine raised (the state becomes FAILED).
        """
        self._generation += 1
        generation = self._generation
        self._engine = None
        self.state = EngineState.LOADING
        self.model_ref = ref
        self.error = None
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(
                self._executor, self._load_job, generation, ref, threads, progress
            )
        except Exception as exc:
            if generation == self._generation:
                self.state = EngineState.FAILED
                self.error = str(exc)
            raise
        if loaded is None or generation != self._generation:
            return LoadOutcome(current=False)
        engine, applied, problem = loaded
        self._engine = engine
        self.state = EngineState.READY
        if self._settings != applied:  # changed while the model loaded
            problem = await self.apply_settings(self._settings)
        return LoadOutcome(current=True, settings_problem=problem)

    def _load_job(
        self, generation: int, ref: str, threads: int | None, progress: ProgressCallback
    ) -> tuple[Engine, EngineSettings, str | None] | None:
        if generation != self._generation:
            return None  # queued behind a load that a newer one already replaced
        engine = self._loader(ref, threads, progress)
        settings = self._settings
        try:
            engine.update_settings(settings)
        except ValueError as exc:
            self._settings = EngineSettings()  # what the new engine started with
            return engine, self._settings, str(exc)
        return engine, settings, None

    async def run(
        self, job: Callable[[Engine, threading.Event], T], stop: threading.Event
    ) -> T | None:
        """``job(engine, stop)`` on the model thread; None while no engine is ready.

        Raises ``Cancelled`` when ``stop`` was set before or during the job. If the awaiting
        task is cancelled, ``stop`` is set so the thread is freed at the next decoding step.
        """
        if self._engine is None:
            return None
        loop = asyncio.get_running_loop()
        self.stats.pending += 1
        try:
            return await loop.run_in_executor(self._executor, self._run_job, job, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            self.stats.pending -= 1

    def _run_job(
        self, job: Callable[[Engine, threading.Event], T], stop: threading.Event
    ) -> T | None:
        if stop.is_set():
            self.stats.cancelled += 1
            raise Cancelled("stopped before it started")
        engine = self._engine
        if engine is None:
            return None
        self.stats.busy = True
        try:
            result = job(engine, stop)
        except Cancelled:
            self.stats.cancelled += 1
            raise
        except Exception:
            self.stats.failed += 1
            raise
        finally:
            self.stats.busy = False
        self.stats.completed += 1
        return result

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
