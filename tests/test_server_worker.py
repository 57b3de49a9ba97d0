"""The model thread's bookkeeping, with a stand-in engine (no model, no server)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from model_store import store
from server.engine import Cancelled, EngineSettings
from server.worker import (
    MAX_WAITING_EXPANSIONS,
    EngineState,
    InFlight,
    Loading,
    ModelWorker,
    Priority,
    load_engine,
    warm_up,
)

WAIT_S = 10.0  # bounds a broken test; never reached when the code works


class BlockingEngine:
    """Runs until its stop flag is set, the way the engine checks between decoding steps."""

    def __init__(self) -> None:
        self.settings = EngineSettings()
        self.started = threading.Event()

    def update_settings(self, settings: EngineSettings) -> None:
        if settings.max_expansion_tokens > 128:
            raise ValueError("max_expansion_tokens must be at most 128 for this model")
        self.settings = settings

    def block(self, stop: threading.Event) -> str:
        self.started.set()
        if not stop.wait(WAIT_S):
            return "never stopped"
        raise Cancelled("stop flag set")


def loader_for(engines: list[BlockingEngine]):
    def load(ref, threads, progress):
        progress(f"loading {ref}", None)
        if ref == "broken":
            raise ValueError("broken: checkpoint is corrupt")
        engine = BlockingEngine()
        engines.append(engine)
        return engine

    return load


async def loaded_worker() -> tuple[ModelWorker, list[BlockingEngine]]:
    engines: list[BlockingEngine] = []
    worker = ModelWorker(loader=loader_for(engines))
    assert (await worker.load("fake", None, lambda message, fraction: None)).current
    return worker, engines


async def test_not_ready_answers_none_at_once() -> None:
    worker = ModelWorker(loader=loader_for([]))
    assert worker.state is EngineState.IDLE
    assert await worker.run(lambda engine, stop: "ran", threading.Event()) is None


async def test_jobs_run_on_one_dedicated_thread() -> None:
    worker, _ = await loaded_worker()
    names = await asyncio.gather(
        *(
            worker.run(lambda engine, stop: threading.current_thread().name, threading.Event())
            for _ in range(5)
        )
    )
    assert len(set(names)) == 1
    assert names[0].startswith("prompt-model")
    assert threading.current_thread().name not in names
    assert worker.stats.completed == 5


async def test_a_cancelled_task_stops_the_engine() -> None:
    worker, (engine,) = await loaded_worker()
    stop = threading.Event()
    task = asyncio.ensure_future(worker.run(lambda e, s: e.block(s), stop))
    await asyncio.to_thread(engine.started.wait, WAIT_S)
    assert worker.stats.busy and worker.stats.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stop.is_set()
    # The next job runs only once the blocked one gave the thread back.
    assert await worker.run(lambda e, s: "next", threading.Event()) == "next"
    assert worker.stats.cancelled == 1
    assert worker.stats.pending == 0


async def test_a_stopped_job_never_starts() -> None:
    worker, _ = await loaded_worker()
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        await worker.run(lambda e, s: "ran", stop)
    assert worker.stats.cancelled == 1
    assert worker.stats.completed == 0


async def test_an_edit_stops_pending_requests_of_that_document_only() -> None:
    worker, (engine,) = await loaded_worker()
    in_flight = InFlight()
    with in_flight.track(1, "file:///a") as ticket_a, in_flight.track(2, "file:///b") as ticket_b:
        task = asyncio.ensure_future(worker.run(lambda e, s: e.block(s), ticket_a.stop))
        await asyncio.to_thread(engine.started.wait, WAIT_S)
        in_flight.document_changed("file:///a")
        with pytest.raises(Cancelled):
            await task
        assert not ticket_b.stop.is_set()
        in_flight.cancel(2)
        assert ticket_b.stop.is_set()


async def test_settings_reach_the_engine() -> None:
    worker, (engine,) = await loaded_worker()
    assert await worker.apply_settings(EngineSettings(max_items=3)) is None
    assert engine.settings.max_items == 3


async def test_settings_the_engine_refuses_are_reported_and_the_old_ones_kept() -> None:
    worker, (engine,) = await loaded_worker()
    refused = await worker.apply_settings(EngineSettings(max_items=2, max_expansion_tokens=999))
    assert refused is not None and "at most 128" in refused
    assert engine.settings == EngineSettings()
    assert worker.settings == EngineSettings()


async def test_a_load_applies_the_settings_and_reports_a_refusal() -> None:
    engines: list[BlockingEngine] = []
    worker = ModelWorker(loader=loader_for(engines))
    worker.set_settings(EngineSettings(max_items=2))
    assert (await worker.load("one", None, lambda m, f: None)).settings_problem is None
    assert engines[-1].settings.max_items == 2
    worker.set_settings(EngineSettings(max_expansion_tokens=999))
    outcome = await worker.load("two", None, lambda m, f: None)
    assert outcome.current
    assert outcome.settings_problem is not None
    assert engines[-1].settings == worker.settings == EngineSettings()


async def test_a_failed_load_is_reported_and_requests_answer_none() -> None:
    worker = ModelWorker(loader=loader_for([]))
    with pytest.raises(ValueError, match="corrupt"):
        await worker.load("broken", None, lambda message, fraction: None)
    assert worker.state is EngineState.FAILED
    assert worker.error == "broken: checkpoint is corrupt"
    assert await worker.run(lambda e, s: "ran", threading.Event()) is None


async def test_a_newer_load_supersedes_a_queued_one() -> None:
    engines: list[BlockingEngine] = []
    worker = ModelWorker(loader=loader_for(engines))
    first = asyncio.ensure_future(worker.load("one", None, lambda m, f: None))
    second = asyncio.ensure_future(worker.load("two", None, lambda m, f: None))
    assert (await first).current is False
    assert (await second).current is True
    assert worker.model_ref == "two"
    assert worker.state is EngineState.READY


async def test_the_statistics_serve_until_the_model_is_built_then_it_takes_over() -> None:
    """The model is built on another thread while the early engine answers on the model
    thread; the switch happens once it is ready, and says so in the progress."""
    model_may_finish = threading.Event()
    early, model = BlockingEngine(), BlockingEngine()
    messages: list[str] = []

    def build_model() -> BlockingEngine:
        if not model_may_finish.wait(WAIT_S):
            raise TimeoutError("never released")
        return model

    def loader(ref, threads, progress):
        return Loading(full=build_model, early=early, statistics="pack")

    worker = ModelWorker(loader=loader)
    worker.set_settings(EngineSettings(max_items=3))
    loading = asyncio.ensure_future(worker.load("default", None, lambda m, f: messages.append(m)))
    for _ in range(int(WAIT_S * 100)):
        if worker.state is EngineState.STATISTICS:
            break
        await asyncio.sleep(0.01)
    assert worker.state is EngineState.STATISTICS and worker.statistics == "pack"
    assert await worker.run(lambda engine, stop: engine, threading.Event()) is early
    assert early.settings.max_items == 3
    assert any("statistics" in message for message in messages)
    assert not loading.done()
    model_may_finish.set()
    outcome = await loading
    assert outcome.current and worker.state is EngineState.READY
    assert await worker.run(lambda engine, stop: engine, threading.Event()) is model
    assert model.settings.max_items == 3


async def test_the_model_is_built_only_once_before_build_lets_it() -> None:
    """The statistics serve while ``before_build`` holds the model's build back (the server
    holds it until they have answered, so that torch's import cannot delay that answer)."""
    build_allowed = asyncio.Event()
    built: list[BlockingEngine] = []
    early, model = BlockingEngine(), BlockingEngine()

    def build_model() -> BlockingEngine:
        built.append(model)
        return model

    def loader(ref, threads, progress):
        return Loading(full=build_model, early=early, statistics="pack")

    worker = ModelWorker(loader=loader)
    loading = asyncio.ensure_future(
        worker.load("default", None, lambda m, f: None, before_build=build_allowed.wait)
    )
    for _ in range(int(WAIT_S * 100)):
        if worker.state is EngineState.STATISTICS:
            break
        await asyncio.sleep(0.01)
    assert await worker.run(lambda engine, stop: engine, threading.Event()) is early
    await asyncio.sleep(0.05)  # time the build would need to start, if it could
    assert built == [] and not loading.done()
    build_allowed.set()
    assert (await loading).current and worker.state is EngineState.READY
    assert built == [model]
    assert await worker.run(lambda engine, stop: engine, threading.Event()) is model


async def occupy_thread(
    worker: ModelWorker, engine: BlockingEngine
) -> tuple[threading.Event, asyncio.Future[object]]:
    """A job holding the model thread until the returned flag is set (it then ends Cancelled)."""
    release = threading.Event()
    job = asyncio.ensure_future(
        worker.run(lambda e, s: e.block(release), release, Priority.EXPANSION)
    )
    await asyncio.to_thread(engine.started.wait, WAIT_S)
    return release, job


async def test_keystroke_requests_start_before_waiting_expansions() -> None:
    worker, (engine,) = await loaded_worker()
    release, running = await occupy_thread(worker, engine)
    order: list[str] = []

    def job(name: str):
        return lambda engine, stop: order.append(name)

    waiting = [
        asyncio.ensure_future(worker.run(job("expand-1"), threading.Event(), Priority.EXPANSION)),
        asyncio.ensure_future(worker.run(job("expand-2"), threading.Event(), Priority.EXPANSION)),
        asyncio.ensure_future(worker.run(job("complete"), threading.Event())),
        asyncio.ensure_future(worker.run(job("inline"), threading.Event())),
    ]
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), WAIT_S)
    with pytest.raises(Cancelled):
        await running
    assert order == ["complete", "inline", "expand-1", "expand-2"]


async def test_a_burst_of_expansions_keeps_only_the_newest_waiting() -> None:
    worker, (engine,) = await loaded_worker()
    release, running = await occupy_thread(worker, engine)
    burst = [
        asyncio.ensure_future(
            worker.run(lambda e, s, n=n: n, threading.Event(), Priority.EXPANSION)
        )
        for n in range(10)
    ]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*burst, return_exceptions=True), WAIT_S)
    with pytest.raises(Cancelled):
        await running
    kept = len(results) - MAX_WAITING_EXPANSIONS
    assert all(isinstance(result, Cancelled) for result in results[:kept])
    assert results[kept:] == list(range(kept, 10))


def test_a_corrupt_pack_is_refused_by_name_after_the_warm_up_hashed_it(
    store_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up hashes the pack ahead; the load still checks it and refuses it."""
    pack = Path(shutil.copytree(store.DEFAULT_STATS_DIR, tmp_path / "default_stats"))
    damaged = pack / "order3_words.npy"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(store, "DEFAULT_STATS_DIR", pack)
    warm_up()
    plan = load_engine("default", None, lambda message, fraction: None)
    assert plan.early is None and plan.statistics == "none"
    assert plan.notice is not None
    assert "order3_words.npy: sha256 does not match" in plan.notice
    assert store.REINSTALL_HINT in plan.notice
