"""The one thread that touches the model, and the bookkeeping that lets requests stop it.

Model calls take tens to hundreds of milliseconds and a model's caches are not safe to drive
from several threads at once, so every call runs on one dedicated single-thread executor,
never on pygls' own pool (which also reads stdin). A request's ``threading.Event`` is set
when the client cancels it or edits its document; the engine checks it between decoding
steps and raises ``Cancelled``, which frees the thread for the next request. Keystroke
requests (completion, ghost text) jump the queue ahead of expansions, and only a few
expansions may wait, so a burst of expansions cannot make typing wait (it waited 30 s behind
100).

Loading comes in two steps. The corpus statistics (numpy arrays, mapped in milliseconds) serve
words and ghost text at once; the language model loads meanwhile on a second thread and
replaces them when it is ready. The default model runs on numpy; a model that needs torch
(seconds to import) is built on that thread too, and nothing else touches torch until then,
so the model thread alone still drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from server import torch_libraries
from server.engine.kinds import engine_for, needs_torch
from server.engine.types import Cancelled, EngineSettings

if TYPE_CHECKING:
    from model_store.personal import PersonalLayer
    from server.engine.kinds import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
ProgressCallback = Callable[[str, "float | None"], None]


@dataclass(frozen=True)
class Loading:
    """What a loader found: the full engine to build, and what serves while it is built."""

    full: Callable[[], Engine]  # the engine for the model (tenths of a second; torch: seconds)
    early: Engine | None = None  # serves meanwhile (the corpus statistics)
    statistics: str = "none"  # which statistics the engines use: "full", "pack" or "none"
    notice: str | None = None  # something the user should know (damaged statistics)


class Loader(Protocol):
    def __call__(
        self, ref: str, threads: int | None, progress: ProgressCallback
    ) -> Engine | Loading: ...


def load_engine(
    ref: str,
    threads: int | None,
    progress: ProgressCallback,
    personal: PersonalLayer | None = None,
) -> Loading:
    """Resolve ``ref`` through the model store (may download or train) and map the word
    statistics of its training corpus: the full ones when built (``prompt-models stats``),
    else the pack shipped with the default model. The engine for the model's kind is built
    later, by ``Loading.full``. Both engines blend the user's ``personal`` statistics into
    the corpus's.

    Damaged statistics are reported (the file and how to repair it) and the model serves
    alone meanwhile.
    """
    # Imported here, on the model thread: the store's dependencies (filelock, hashing) took
    # a tenth of a second that `initialize` would otherwise wait for.
    from model_store.checkpoint import CheckpointError
    from model_store.personal import trim_heap
    from model_store.store import DEFAULT_STATS_DIR, ModelStore

    store = ModelStore()
    checkpoint = store.resolve(ref, progress=progress)
    word_stats = None
    notice = None
    statistics = "none"
    if checkpoint.kind == "causal-lm":
        try:
            word_stats = store.word_stats(checkpoint)
        except CheckpointError as exc:
            notice = f"corpus statistics not used: {exc}"
            log.warning("%s", notice)
        if word_stats is None and notice is None:
            log.warning(
                "no corpus statistics for %s: completions come from the model alone; "
                "`prompt-models stats --data TRAINING_CORPUS` builds them",
                checkpoint.name,
            )
        if word_stats is not None:
            found = store.word_stats_dir(checkpoint)
            statistics = "pack" if found == DEFAULT_STATS_DIR else "full"

    def full() -> Engine:
        progress(f"loading model {checkpoint.name}", None)
        # A model that needs torch: it takes seconds to import, never before `initialize` is
        # answered nor before the statistics serve, and its libraries load without holding
        # the GIL, so the statistics go on answering meanwhile.
        if needs_torch(checkpoint.kind, checkpoint.path):
            torch_libraries.preload()
        engine = engine_for(
            checkpoint.kind, checkpoint.path, threads, word_stats=word_stats, personal=personal
        )
        # The build freed tens of MB of temporaries (the checkpoint's fp32 weights once
        # packed, transposed copies) that glibc would keep: 25-40 MB of resident memory.
        trim_heap()
        return engine

    early = None
    if word_stats is not None:
        from server.engine.stats_engine import StatisticsEngine

        early = StatisticsEngine(word_stats, personal=personal)
    return Loading(full, early, statistics, notice)


def warm_up() -> None:
    """What ``load_engine`` does first for the default model, done ahead: the packaged model
    and its statistics are hashed on threads (``hash_ahead``: ``verify`` waits for them
    instead of hashing again) and the modules that open and serve the statistics are
    imported. It decides nothing: the load checks everything as before and reports any
    problem."""
    from model_store.checkpoint import Checkpoint, CheckpointError, hash_ahead, read_manifest
    from model_store.store import DEFAULT_MODEL_DIR, ModelStore

    try:
        hash_ahead(DEFAULT_MODEL_DIR)
        checkpoint = Checkpoint("default", DEFAULT_MODEL_DIR, read_manifest(DEFAULT_MODEL_DIR))
        statistics = ModelStore().word_stats_dir(checkpoint)
        if statistics is not None:
            hash_ahead(statistics)
        import model_store.personal  # noqa: F401
        import server.engine.stats_engine  # noqa: F401
    except (CheckpointError, OSError) as exc:
        log.debug("warming up for the default model: %s", exc)


class Priority(enum.IntEnum):
    """Which waiting job the model thread takes first (lower first)."""

    KEYSTROKE = 0  # completion and ghost text: the user is typing and waits for them
    EXPANSION = 1  # whole prompts: asked for explicitly, seconds are acceptable


MAX_WAITING_EXPANSIONS = 2  # more waiting than this: the oldest are dropped


@dataclass(order=True)
class _Waiting:
    """A job waiting for the model thread, ordered by priority then arrival."""

    priority: Priority
    sequence: int
    job: Callable[[Any, threading.Event], Any] = field(compare=False)
    stop: threading.Event = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


class EngineState(enum.Enum):
    IDLE = "idle"  # no model requested yet
    LOADING = "loading"
    STATISTICS = "statistics"  # the corpus statistics serve; the model is loading
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class LoadOutcome:
    current: bool  # False: a newer load replaced this one before it finished
    settings_problem: str | None = None  # why the new engine refused the user's settings
    notice: str | None = None  # the loader's word for the user (damaged statistics)


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
        # Builds the full engine while the model thread serves the statistics.
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt-load")
        self._loader = loader
        self._engine: Engine | None = None
        self._settings = EngineSettings()  # what the user asked for, for every engine
        self._generation = 0
        self.state = EngineState.IDLE
        self.model_ref: str | None = None
        self.error: str | None = None
        self.statistics = "none"  # which corpus statistics serve: "full", "pack" or "none"
        self.stats = WorkerStats()
        self._queue: list[_Waiting] = []
        self._sequence = itertools.count()
        self._running = False
        self._executor_closed = False

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def warm_up(self) -> None:
        """Run ``warm_up`` on the model thread while the client and the server exchange their
        first messages; the load queues behind it, so the two never import at once."""
        self._executor.submit(warm_up)

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

    async def load(
        self,
        ref: str,
        threads: int | None,
        progress: ProgressCallback,
        before_build: Callable[[], Awaitable[None]] | None = None,
    ) -> LoadOutcome:
        """Replace the engine with ``ref``'s. Requests answer empty until the statistics
        serve (state STATISTICS), and from the statistics until the model is ready (READY).
        ``before_build`` is awaited between the two: the caller decides when the model's
        build may take the CPU.

        Raises whatever the store or the engine raised (the state becomes FAILED; statistics
        already serving go on serving).
        """
        self._generation += 1
        generation = self._generation
        self._engine = None
        self.state = EngineState.LOADING
        self.model_ref = ref
        self.error = None
        self.statistics = "none"
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(
                self._executor, self._plan_job, generation, ref, threads, progress
            )
            if plan is None or generation != self._generation:
                return LoadOutcome(current=False)
            self.statistics = plan.statistics
            if plan.early is not None:
                # On a refusal it keeps its defaults; the full engine reports the problem.
                with contextlib.suppress(ValueError):
                    plan.early.update_settings(self._settings)
                self._engine = plan.early
                self.state = EngineState.STATISTICS
                progress("serving from the corpus statistics; loading the model", None)
            if before_build is not None:
                await before_build()
            loaded = await loop.run_in_executor(self._builder, self._build_job, generation, plan)
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
        return LoadOutcome(current=True, settings_problem=problem, notice=plan.notice)

    def _plan_job(
        self, generation: int, ref: str, threads: int | None, progress: ProgressCallback
    ) -> Loading | None:
        if generation != self._generation:
            return None  # queued behind a load that a newer one already replaced
        found = self._loader(ref, threads, progress)
        return found if isinstance(found, Loading) else Loading(full=lambda: found)

    def _build_job(
        self, generation: int, plan: Loading
    ) -> tuple[Engine, EngineSettings, str | None] | None:
        if generation != self._generation:
            return None
        return self._configure(plan.full())

    def _configure(self, engine: Engine) -> tuple[Engine, EngineSettings, str | None]:
        """Give a new engine (no request sees it yet) the user's settings, or its defaults
        and the reason when it refuses them."""
        settings = self._settings
        try:
            engine.update_settings(settings)
        except ValueError as exc:
            self._settings = EngineSettings()  # what the new engine started with
            return engine, self._settings, str(exc)
        return engine, settings, None

    async def run(
        self,
        job: Callable[[Engine, threading.Event], T],
        stop: threading.Event,
        priority: Priority = Priority.KEYSTROKE,
    ) -> T | None:
        """``job(engine, stop)`` on the model thread; None while no engine is ready.

        Waiting jobs start in ``priority`` order, oldest first within one priority. Raises
        ``Cancelled`` when ``stop`` was set before or during the job, or when newer
        expansions pushed it out of the queue. If the awaiting task is cancelled, ``stop`` is
        set so the thread is freed at the next decoding step.
        """
        if self._engine is None:
            return None
        loop = asyncio.get_running_loop()
        waiting = _Waiting(priority, next(self._sequence), job, stop, loop.create_future())
        heapq.heappush(self._queue, waiting)
        self._drop_oldest_expansions()
        self.stats.pending += 1
        self._start_next()
        try:
            return await waiting.future
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            self.stats.pending -= 1

    def _drop_oldest_expansions(self) -> None:
        """Beyond ``MAX_WAITING_EXPANSIONS`` waiting, the oldest are stopped: a burst of
        expansions must not hold the thread for long, and the newest is the one wanted."""
        expansions = sorted(w for w in self._queue if w.priority is Priority.EXPANSION)
        for waiting in expansions[: max(0, len(expansions) - MAX_WAITING_EXPANSIONS)]:
            waiting.stop.set()  # started next: ends at once with Cancelled

    def _start_next(self) -> None:
        """Hand the most urgent waiting job to the model thread, one at a time."""
        if self._running or not self._queue:
            return
        waiting = heapq.heappop(self._queue)
        self._running = True
        done = asyncio.get_running_loop().run_in_executor(
            self._executor, self._run_job, waiting.job, waiting.stop
        )
        done.add_done_callback(lambda finished: self._finished(finished, waiting.future))

    def _finished(self, finished: asyncio.Future[Any], future: asyncio.Future[Any]) -> None:
        self._running = False
        if not future.done():
            if finished.cancelled():
                future.cancel()
            elif (error := finished.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(finished.result())
        if not self._executor_closed:
            self._start_next()

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
        self._executor_closed = True
        for waiting in self._queue:
            waiting.stop.set()
            if not waiting.future.done():
                waiting.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._builder.shutdown(wait=False, cancel_futures=True)
