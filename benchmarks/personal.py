"""The personal layer on modern-style prompts: ``python -m benchmarks.run --sections personal``.

``modern/modern_dev.txt`` (evaluation only: nothing counted from it is kept) holds 6,676
prompts in collection order. One server learns its first lines through the learn command
(``promptAutocomplete.learn``), N at a time as a user would (the counts after learning 100 then
400 more equal those after learning 500 at once: tests/test_personal.py), and after each N is
measured on a fixed sample of 100 of its last 1,676 lines, which it never learned: the learning
curve. The same server types the 2022-style dev sample too, before learning and after 5,000,
which the personal layer must not make worse. The personal weight is tuned in-process on
modern_dev's first 5,000 lines only (learning its first lines, typing lines 4,500-5,000), never
on the test region. Finally a server that has learned 100k prompts (2022 training prompts) is
timed, and its personal store and memory measured. Timed rows carry the load average.

Each server gets its own store: a folder that links to everything in the real store (the
corpus statistics) except the personal prompts.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import data
from benchmarks.ksr import MemoSystem, evaluate
from benchmarks.lsp_driver import LoopThread, LspDriver, LspSystem
from benchmarks.stats import percentiles
from benchmarks.vocabulary import modern_lines
from model_store import paths

CURVE = (0, 100, 500, 2000, 5000)
TEST_POOL = 1676  # the last lines of modern_dev.txt: never learned
TEST_PROMPTS = 100
TUNE_LEARNED = (4500,)
TUNE_POOL = (4500, 5000)  # the lines typed while tuning: after those learned, before the test
TUNE_WEIGHTS = (0.0, 0.9)  # the product's and none (finer: docs/benchmarks-notes.md)
LATENCY_LEARNED = 100_000
LEARN_CALLS = 200  # single-prompt learn commands timed
READY_S = 600.0


def test_sample(lines: Sequence[str], size: int = TEST_PROMPTS) -> list[str]:
    """The fixed test sample of the unlearned tail; smaller sizes are its prefixes."""
    return random.Random(data.SEED).sample(list(lines[-TEST_POOL:]), TEST_PROMPTS)[:size]


def tuning_sample(lines: Sequence[str], size: int) -> list[str]:
    """Prompts of lines 4,500-5,000, which the tuning never learns and the curve's test
    region (the last 1,676 lines) does not include: the weight is chosen here."""
    pool = list(lines[TUNE_POOL[0] : TUNE_POOL[1]])
    return random.Random(data.SEED + 1).sample(pool, min(size, len(pool)))


@contextlib.contextmanager
def private_store() -> Iterator[Path]:
    """A store that shares the real one's models and statistics but not its personal layer."""
    real = paths.store_dir()
    with tempfile.TemporaryDirectory(prefix="personal-bench-") as folder:
        home = Path(folder)
        if real.is_dir():
            for entry in real.iterdir():
                if entry.name != "personal":
                    (home / entry.name).symlink_to(entry)
        yield home


class LearningServer:
    """prompt-ls on a private store, driven over LSP from the benchmark's loop thread."""

    def __init__(self, runner: LoopThread, command: Sequence[str], home: Path, log: Path) -> None:
        self.runner = runner
        self.home = home
        self.driver = LspDriver(command, log_path=log, environment={paths.STORE_ENV: str(home)})

    def start(self) -> None:
        self.runner.run(self.driver.start(), timeout=READY_S)
        self.runner.run(self.driver.wait_until_serving(READY_S), timeout=READY_S + 10)

    def status(self) -> dict[str, Any]:
        return self.runner.run(self.driver.client.status(), timeout=60)

    def wait(self, condition: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + READY_S
        while not condition(status := self.status()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: still {status} after {READY_S:.0f} s")
            time.sleep(0.1)

    def learn(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Learn the prompts in one command; wait until the server counted them."""
        result = self.runner.run(self.driver.client.learn("\n".join(prompts)), timeout=READY_S)
        self.wait(
            lambda status: bool(status["personal"] and status["personal"]["idle"]),
            "the personal statistics to be counted",
        )
        return result

    def learn_latencies(self, prompts: Sequence[str]) -> list[float]:
        """Seconds from sending one prompt's learn command to its reply."""
        found = []
        for prompt in prompts:
            began = time.perf_counter()
            self.runner.run(self.driver.client.learn(prompt), timeout=60)
            found.append(time.perf_counter() - began)
        return found

    def ksr(self, targets: Sequence[str], name: str) -> dict[str, Any]:
        """KSR with ghost text and menu (the issue's target), with call latencies."""
        memo = MemoSystem(LspSystem(self.driver, self.runner, name))
        found = evaluate(memo, targets, use_menu=True)
        return {
            "prompts": len(targets),
            "ksr": round(found.ksr, 4),
            "latency_ms": _ms(memo.latencies),
            "per_prompt": [list(pair) for pair in found.per_prompt],
        }

    def stop(self) -> None:
        self.runner.run(self.driver.stop(), timeout=60)


def _ms(seconds: Sequence[float]) -> dict[str, float]:
    return {key: round(value * 1000, 2) for key, value in percentiles(seconds).items()}


def _log(message: str) -> None:
    print(f"[personal {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    directory: Path,
    command: Sequence[str],
    log: Path,
    stamp: Callable[[dict[str, Any]], dict[str, Any]],
    sample: int,
    lsp_sample: int,
    tune_prompts: int,
) -> dict[str, Any]:
    """The learning curve, the 2022 check, the weight ablation and the 100k-prompt server."""
    lines = modern_lines(directory)
    targets = test_sample(lines, sample)
    dev_2022 = data.ksr_sample(data.dev_lines(directory), lsp_sample)
    from server.engine.types import EngineSettings

    found: dict[str, Any] = {"test_pool": TEST_POOL, "weight": EngineSettings.personal_weight}
    found.update(curve=[], dev_2022=[], tuning=[])
    runner = LoopThread()
    try:
        with private_store() as home:
            server = LearningServer(runner, command, home, log)
            server.start()
            try:
                learned = 0
                for target in CURVE:
                    if target > learned:
                        server.learn(lines[learned:target])
                        learned = target
                    _log(f"KSR on {len(targets)} modern prompts after learning {learned}")
                    row = server.ksr(targets, f"prompt-ls after {learned} learned")
                    found["curve"].append(stamp({"learned": learned, **row, **_load()}))
                    _log(f"  KSR {row['ksr']}")
                    if learned in (0, CURVE[-1]):
                        _log(f"KSR on {len(dev_2022)} 2022 dev prompts after learning {learned}")
                        row = server.ksr(dev_2022, f"2022 dev after {learned} learned")
                        found["dev_2022"].append(stamp({"learned": learned, **row, **_load()}))
                        _log(f"  KSR {row['ksr']}")
            finally:
                server.stop()
        found["at_scale"] = at_scale(runner, command, log, directory, stamp)
        found["tuning"] = tune(lines, directory, tune_prompts, stamp)
    finally:
        runner.close()
    return found


def _load() -> dict[str, list[float]]:
    """The load average when a row's timing was taken (the machine is shared)."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()]}


def tune(
    lines: Sequence[str],
    directory: Path,
    size: int,
    stamp: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """KSR in-process at each personal weight, after learning few and many of modern_dev's
    first lines, on its lines 4,500-5,000 (``tuning_sample``) and on 2022 dev prompts
    outside the KSR sample."""
    from benchmarks.engine_system import EngineSystem
    from model_store.personal import PersonalLayer, PersonalStore, Prompts
    from model_store.store import ModelStore
    from server.engine import CompletionEngine
    from server.engine.types import EngineSettings

    modern = tuning_sample(lines, size)
    dev_2022 = data.tuning_sample(data.dev_lines(directory), size)
    store = ModelStore()
    checkpoint = store.resolve("default")
    rows = []
    with tempfile.TemporaryDirectory(prefix="personal-tune-") as folder:
        layer = PersonalLayer(PersonalStore(Path(folder) / "prompts.sqlite3"))
        engine = CompletionEngine.from_checkpoint(
            checkpoint.path, word_stats=store.word_stats(checkpoint), personal=layer
        )
        try:
            for learned in TUNE_LEARNED:
                layer.forget()
                layer.learn(Prompts(tuple(lines[:learned])))
                if not layer.wait_counted(READY_S):
                    raise TimeoutError("the tuning prompts were never counted")
                sets = [("modern", modern)]
                if learned == TUNE_LEARNED[-1]:
                    sets.append(("2022", dev_2022))
                for style, targets in sets:
                    for weight in TUNE_WEIGHTS:
                        engine.update_settings(EngineSettings(personal_weight=weight))
                        name = f"personal weight {weight} after {learned} learned, {style}"
                        _log(f"KSR {name} on {len(targets)} tuning prompts")
                        result = evaluate(EngineSystem(engine, name), targets, use_menu=True)
                        row = {"learned": learned, "style": style, "weight": weight}
                        row.update(prompts=len(targets), ksr=round(result.ksr, 4), **_load())
                        rows.append(stamp(row))
                        _log(f"  KSR {row['ksr']}")
        finally:
            layer.close()
    return rows


def at_scale(
    runner: LoopThread,
    command: Sequence[str],
    log: Path,
    directory: Path,
    stamp: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """A server that learned 100k prompts: learn cost, completion latency, store size."""
    prompts = _training_prompts(directory, LATENCY_LEARNED + LEARN_CALLS)
    typed = data.ksr_sample(data.dev_lines(directory), 20)
    with private_store() as home:
        server = LearningServer(runner, command, home, log)
        server.start()
        try:
            before = server.driver.resident_mb()
            began = time.perf_counter()
            learned = server.learn(prompts[:LATENCY_LEARNED])
            counted_s = time.perf_counter() - began
            after = server.driver.resident_mb()
            learn_each = server.learn_latencies(prompts[LATENCY_LEARNED:])
            server.wait(lambda s: bool(s["personal"] and s["personal"]["idle"]), "recounting")
            for kind in server.driver.latencies.values():
                kind.clear()
            _log(f"typing {len(typed)} dev prompts with {learned['learned']} prompts learned")
            evaluate(LspSystem(server.driver, runner, "at scale"), typed, use_menu=True)
            latency = {kind: _ms(v) for kind, v in server.driver.latencies.items() if v}
            store = home / "personal" / "prompts.sqlite3"
            size = sum(
                p.stat().st_size for p in store.parent.iterdir() if p.name.startswith(store.name)
            )
        finally:
            server.stop()
    return stamp(
        {
            "learned": learned["learned"],
            "learn_and_count_s": round(counted_s, 1),
            "learn_one_ms": _ms(learn_each),
            "latency_ms": latency,
            "typed_prompts": len(typed),
            "store_mb": round(size / 2**20, 1),
            "resident_mb_before": before,
            "resident_mb_after": after,
            **_load(),
        }
    )


def _training_prompts(directory: Path, count: int) -> list[str]:
    """The first ``count`` cleaned 2022 training prompts (a stand-in for a heavy user)."""
    return list(data.training_corpus(directory).prompts[:count])
