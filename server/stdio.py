"""stdio transport that reads the client's messages on the event loop.

pygls' own stdio server reads stdin in a worker thread, one thread hop per call: three per
message (the header, the blank line, the body). Every keystroke sends a change and one or
two requests, and on two busy cores each hop waits for a thread to be scheduled; together
they cost a few milliseconds of every completion. A pipe, socket or terminal can be watched
by the event loop instead, as pygls' TCP server already does. Regular files (stdin redirected
from a file) and Windows consoles cannot be, so those keep pygls' reader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from typing import BinaryIO

from pygls.io_ import StdoutWriter, run_async
from pygls.server import JsonRPCServer

log = logging.getLogger(__name__)


class PipeReader:
    """pygls' reader interface over an asyncio stream, with pygls' tolerance of bad input.

    A line longer than the stream's buffer is not a header: it is dropped, as pygls ignores
    any line that is not ``Content-Length``. A body cut short by the end of input ends the
    session, as the end of input does.
    """

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self) -> bytes:
        try:
            return await self._stream.readline()
        except ValueError:  # over the limit: asyncio has discarded the line
            log.warning("dropped an over-long line on stdin")
            return b"?\r\n"

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""


def pollable(stream: BinaryIO) -> bool:
    """Whether the event loop can watch ``stream``: a pipe, socket or terminal, not on Windows."""
    if sys.platform == "win32":
        return False
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):  # no file descriptor (a test's in-memory stream)
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def serve(server: JsonRPCServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve one client on a pollable ``stdin`` until it exits or the input ends."""
    log.info("Starting async IO server (stdin read on the event loop)")
    stop = threading.Event()
    server._stop_event = stop  # what pygls' shutdown sets to end the loop
    server.protocol.set_writer(StdoutWriter(stdout))

    async def session() -> None:
        stream = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
        await run_async(
            stop_event=stop,
            reader=PipeReader(stream),
            protocol=server.protocol,
            logger=log,
            error_handler=server.report_server_error,
        )

    try:
        asyncio.run(session())
    except BrokenPipeError:
        log.error("Connection to the client is lost! Shutting down the server.")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
