"""``$/progress`` for model loading, fed by callbacks that arrive on the model thread."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

CREATE_TIMEOUT_S = 10.0


class LoadProgress:
    """One work-done progress: begin, reports relayed from any thread, end.

    ``begin`` returns at once: the load does not wait for the client to accept the token
    (a round trip), and what is reported or ended meanwhile follows once it has.
    Silent (log only) when the client did not declare ``window.workDoneProgress`` or refused
    the token: progress is a courtesy, never a reason for loading to fail.
    """

    def __init__(self, ls: LanguageServer, token: str, *, enabled: bool) -> None:
        self._ls = ls
        self._token = token
        self._enabled = enabled
        self._loop = asyncio.get_running_loop()
        self._last: tuple[str, int | None] | None = None
        self._open = False
        self._creating: asyncio.Task[None] | None = None
        self._early: list[tuple[str, float | None]] = []  # reported while the token is created
        self._ended: str | None = None  # ended while the token is created

    def begin(self, title: str) -> None:
        if self._enabled:
            self._creating = asyncio.create_task(self._create(title))

    async def _create(self, title: str) -> None:
        try:
            await asyncio.wait_for(
                self._ls.work_done_progress.create_async(self._token), CREATE_TIMEOUT_S
            )
        except Exception as exc:  # a refusing or silent client must not stop the load
            log.warning("no progress token %s from the client: %r", self._token, exc)
            return
        self._open = True
        self._ls.work_done_progress.begin(
            self._token, types.WorkDoneProgressBegin(title=title, cancellable=False, percentage=0)
        )
        for message, fraction in self._early:
            self._report(message, fraction)
        if self._ended is not None:
            self.end(self._ended)

    def callback(self, message: str, fraction: float | None) -> None:
        """The model store's progress callback: safe to call from the model thread."""
        log.info("model: %s%s", message, "" if fraction is None else f" ({fraction:.0%})")
        self._loop.call_soon_threadsafe(self._report, message, fraction)

    def _report(self, message: str, fraction: float | None) -> None:
        if not self._open:
            if self._creating is not None and not self._creating.done():
                self._early.append((message, fraction))
            return
        percentage = None if fraction is None else round(min(max(fraction, 0.0), 1.0) * 100)
        if (message, percentage) == self._last:
            return  # training reports often; only changes reach the client
        self._last = (message, percentage)
        self._ls.work_done_progress.report(
            self._token, types.WorkDoneProgressReport(message=message, percentage=percentage)
        )

    def end(self, message: str) -> None:
        if not self._open:
            if self._creating is not None and not self._creating.done():
                self._ended = message
            return
        self._open = False
        self._ls.work_done_progress.end(self._token, types.WorkDoneProgressEnd(message=message))
