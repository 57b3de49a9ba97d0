"""``$/progress`` for model loading, fed by callbacks that arrive on the model thread."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)


class LoadProgress:
    """One work-done progress: begin, reports relayed from any thread, end.

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

    async def begin(self, title: str) -> None:
        if not self._enabled:
            return
        try:
            await self._ls.work_done_progress.create_async(self._token)
        except Exception as exc:  # a client error answer must not stop the load
            log.warning("client refused progress token %s: %s", self._token, exc)
            return
        self._open = True
        self._ls.work_done_progress.begin(
            self._token, types.WorkDoneProgressBegin(title=title, cancellable=False, percentage=0)
        )

    def callback(self, message: str, fraction: float | None) -> None:
        """The model store's progress callback: safe to call from the model thread."""
        log.info("model: %s%s", message, "" if fraction is None else f" ({fraction:.0%})")
        self._loop.call_soon_threadsafe(self._report, message, fraction)

    def _report(self, message: str, fraction: float | None) -> None:
        if not self._open:
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
            return
        self._open = False
        self._ls.work_done_progress.end(self._token, types.WorkDoneProgressEnd(message=message))
