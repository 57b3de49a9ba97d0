"""Time ``prompt-ls`` through the REPL's own LSP client, for KSR, latency and cold start.

``client_tui.lsp.PromptServerClient`` spawns the server, declares the capabilities, keeps
the document in sync and turns answers into Python-index edits exactly as the REPL does, so
the benchmark measures the client users run. This module adds what a benchmark needs on top:
each request timed from send to reply, the server's memory, and its stderr in a log file.
Every keystroke is a ``didChange``, then ``textDocument/completion`` and
``textDocument/inlineCompletion`` at the end of the line, one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks.ksr import MENU_SIZE, MenuItem
from client_tui.lsp import Edit, PromptServerClient, ServerUnavailable, default_server_env

__all__ = ["LoopThread", "LspDriver", "LspSystem", "ServerUnavailable"]

T = TypeVar("T")


def menu_items(text: str, edits: Sequence[Edit]) -> list[MenuItem]:
    """The first ``MENU_SIZE`` menu edits (in the server's order) as (start, line after it)."""
    return [(edit.start, edit.new_text + text[edit.end :]) for edit in edits[:MENU_SIZE]]


def ghost_text(text: str, edits: Sequence[Edit]) -> str:
    """What the first inline edit appends to the line; nothing if it rewrites typed text."""
    if not edits:
        return ""
    edit = edits[0]
    line = text[: edit.start] + edit.new_text + text[edit.end :]
    return line[len(text) :] if line.startswith(text) else ""


class _StderrLog(logging.Handler):
    """The client's debug log of the server's stderr lines, appended to a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        self._file.write(self.format(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        super().close()


class LspDriver:
    """One prompt-ls process and its document, timed per request kind (seconds)."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        log_path: Path | None = None,
        settings: dict[str, Any] | None = None,
        environment: dict[str, str | None] | None = None,
    ) -> None:
        """``command``: how to start the server (default: as the REPL starts it);
        ``environment``: variables for the server on top of the REPL's (None removes one)."""
        env = None
        if environment:
            env = default_server_env()
            for name, value in environment.items():
                if value is None:
                    env.pop(name, None)
                else:
                    env[name] = value
        self.client = PromptServerClient(settings or {}, command=command, env=env)
        self.log_path = log_path
        self.latencies: dict[str, list[float]] = {"completion": [], "inline": []}
        self.spawned_at = 0.0
        self.pid = 0
        self._rss_peak = 0
        self._watcher: asyncio.Task[None] | None = None
        self._log: _StderrLog | None = None

    async def start(self) -> float:
        """Spawn, initialize and open the (empty) document; seconds from spawn until then."""
        if self.log_path is not None:
            self._log = _StderrLog(self.log_path)
            logging.getLogger("client_tui.lsp").addHandler(self._log)
            logging.getLogger("client_tui.lsp").setLevel(logging.DEBUG)
        self.spawned_at = time.perf_counter()
        try:
            await asyncio.wait_for(self.client.start(), timeout=120)
        except TimeoutError as exc:
            raise ServerUnavailable(f"initialize timed out; see {self.log_path}") from exc
        self.pid = self.client.server_pid or 0
        self._watcher = asyncio.create_task(self._watch_rss())
        return time.perf_counter() - self.spawned_at

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

    async def completion(self, text: str) -> list[MenuItem]:
        began = time.perf_counter()
        edits = await self.client.complete(text, len(text))
        self.latencies["completion"].append(time.perf_counter() - began)
        return menu_items(text, edits)

    async def inline(self, text: str) -> str:
        began = time.perf_counter()
        edits = await self.client.inline(text, len(text))
        self.latencies["inline"].append(time.perf_counter() - began)
        return ghost_text(text, edits)

    async def keystroke(self, text: str) -> tuple[str, list[MenuItem]]:
        """didChange to ``text``, then completion and inline completion at its end."""
        menu = await self.completion(text)
        ghost = await self.inline(text)
        return ghost, menu

    async def wait_until_serving(self, timeout: float = 180.0) -> None:
        """Until the server's status says its model serves (``ready``) or failed to load.

        A state-by-state simulation memoises each state's answer, so the empty answers of the
        first second would stand for every later prompt that starts the same way ("", "a"):
        KSR is measured on what the server serves, its first second by the cold start.
        """
        try:
            await self.client.wait_until_ready(timeout)
        except TimeoutError as error:
            raise ServerUnavailable(f"the model was not ready within {timeout:.0f} s") from error

    async def first_completion_seconds(self, text: str, timeout: float = 120.0) -> float:
        """Seconds from spawn until a completion request at the end of ``text`` is non-empty."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if await self.completion(text):
                return time.perf_counter() - self.spawned_at
            await asyncio.sleep(0.05)
        raise ServerUnavailable(f"no completion within {timeout:.0f} s of spawning")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), timeout=20)
        if self._watcher is not None:
            self._watcher.cancel()
        if self._log is not None:
            logging.getLogger("client_tui.lsp").removeHandler(self._log)
            self._log.close()


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
