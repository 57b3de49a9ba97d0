"""stdio (and TCP) transport: frames read on the event loop, resynchronised after bad input.

pygls' own stdio server reads stdin in a worker thread, one thread hop per call: three per
message (the header, the blank line, the body). Every keystroke sends a change and one or
two requests, and on two busy cores each hop waits for a thread to be scheduled; together
they cost a few milliseconds of every completion. A pipe, socket or terminal can be watched
by the event loop instead; regular files (stdin redirected from a file) cannot, so those are
read in a thread, through the same framing.

pygls' framing also full-matches ``Content-Length: N\\r\\n``: one body without a header, a
lower-case header or LF-only line ends, and it never finds a header again, which leaves the
server deaf for the rest of the session. Here a bad frame is logged and skipped up to the next
``Content-Length:`` header (any case, CRLF or LF), a body that is not UTF-8 JSON is answered
with a parse error, and a length over ``MAX_CONTENT_LENGTH`` is refused, never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from pygls.protocol import JsonRPCProtocol
from pygls.server import JsonRPCServer

log = logging.getLogger(__name__)

MAX_CONTENT_LENGTH = 64 * 1024 * 1024  # far above any prompt document; refused, not buffered
MAX_HEADER_BYTES = 8192  # a header section longer than this is garbage, not a header
READ_CHUNK = 1 << 16
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n", re.IGNORECASE)
_HEADER_FIELD = re.compile(rb"[A-Za-z0-9-]+[ \t]*:[^\r\n]*")
# Bytes kept when no header is found yet: a header split across two reads still matches.
_KEEP_TAIL = 64

ReadChunk = Callable[[], Awaitable[bytes]]


class FrameReader:
    """Message bodies from a byte stream (``read`` returns b"" at the end of input)."""

    def __init__(self, read: ReadChunk) -> None:
        self._read = read
        self._buffer = bytearray()
        self._eof = False
        self.skipped_bytes = 0  # garbage dropped while resynchronising, for tests and logs

    async def _fill(self) -> bool:
        """Read more input; False at the end of input."""
        if self._eof:
            return False
        chunk = await self._read()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _skip(self, count: int, why: str) -> None:
        dropped = bytes(self._buffer[:count])
        del self._buffer[:count]
        if dropped.strip():
            self.skipped_bytes += len(dropped)
            log.warning("skipped %d bytes of stdin (%s): %r", len(dropped), why, dropped[:80])

    async def next_body(self) -> bytes | None:
        """The next frame's body; None once the input has ended."""
        while True:
            header = _CONTENT_LENGTH.search(self._buffer)
            if header is None:
                keep = len(self._buffer) - _KEEP_TAIL
                if keep > 0:
                    self._skip(keep, "no Content-Length header")
                if not await self._fill():
                    self._skip(len(self._buffer), "input ended inside a frame")
                    return None
                continue
            length, header_end = int(header.group(1)), header.end() - header.start()
            self._skip(header.start(), "not inside a frame")
            body_start = await self._end_of_headers(header_end)
            if body_start is None:
                if self._eof:
                    return None
                continue  # a bad header section was skipped: look for the next header
            if length > MAX_CONTENT_LENGTH:
                self._skip(body_start, f"Content-Length {length} over {MAX_CONTENT_LENGTH}")
                continue
            return await self._body(body_start, body_start + length)

    async def _body(self, start: int, end: int) -> bytes | None:
        """The bytes from ``start`` to ``end``, or up to a header that starts before ``end``.

        A JSON body cannot contain a Content-Length line (a line break inside a JSON string is
        escaped), so one inside means the declared length was too long: the body is cut there
        (and answered as a parse error) and the next frame survives.
        """
        scanned = start
        while True:
            inner = _CONTENT_LENGTH.search(
                self._buffer, max(start, scanned - _KEEP_TAIL), end + _KEEP_TAIL
            )
            if inner is not None and inner.start() < end:
                log.warning("a body is shorter than its Content-Length; the next frame is kept")
                end = inner.start()
                break
            if len(self._buffer) >= end:
                break
            scanned = len(self._buffer)
            if not await self._fill():
                self._skip(len(self._buffer), "input ended inside a body")
                return None
        body = bytes(self._buffer[start:end])
        del self._buffer[:end]
        return body

    async def _end_of_headers(self, position: int) -> int | None:
        """Where the body starts, after the header lines from ``position`` and a blank line.

        None if what follows is not a header section: the Content-Length line is dropped and
        the caller looks for the next one.
        """
        while True:
            newline = self._buffer.find(b"\n", position)
            if newline < 0:
                if len(self._buffer) > MAX_HEADER_BYTES or not await self._fill():
                    self._skip(max(position, 1), "unterminated header section")
                    return None
                continue
            line = bytes(self._buffer[position:newline]).rstrip(b"\r")
            if not line:
                return newline + 1
            if not _HEADER_FIELD.fullmatch(line) or newline > MAX_HEADER_BYTES:
                self._skip(position, "a header without the blank line that ends it")
                return None
            position = newline + 1


def answer_error(protocol: JsonRPCProtocol, msg_id: Any, error: JsonRpcException) -> None:
    """An error response; ``"id": null`` written out when the request's id is unknown.

    pygls leaves a None id out of the message, and a message with neither an id nor a method
    is not a response to clients (pygls' own client fails on it).
    """
    if msg_id is not None:
        protocol._send_response(msg_id, error=error.to_response_error())
        return
    response = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": error.code, "message": error.message},
    }
    protocol._send_data(response)


def dispatch(protocol: JsonRPCProtocol, body: bytes) -> None:
    """Hand one body to the protocol; a body that is not a JSON-RPC message gets its error.

    Errors are answered with ``id: null`` when the message's id cannot be read (JSON-RPC 2.0).
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        log.warning("a message body is not UTF-8: %s", exc)
        answer_error(protocol, None, JsonRpcParseError("Parse error: the body is not UTF-8"))
        return
    except ValueError as exc:
        log.warning("a message body is not JSON: %s: %r", exc, body[:80])
        error = JsonRpcParseError(f"Parse error: the body is not JSON ({exc})")
        answer_error(protocol, None, error)
        return
    problem = envelope_problem(data)
    if problem is not None:
        log.warning("invalid request: %s", problem)
        msg_id = data.get("id") if isinstance(data, dict) and valid_id(data.get("id")) else None
        answer_error(protocol, msg_id, JsonRpcInvalidRequest(f"Invalid request: {problem}"))
        return
    if "method" in data:
        data.setdefault("params", None)  # optional in JSON-RPC; pygls' types require the key
    try:
        message = protocol.structure_message(data)
    except JsonRpcException:
        return  # logged, and answered if it was a request (server.PromptProtocol)
    except Exception:
        log.exception("cannot read message %r", body[:200])
        if "method" in data and data.get("id") is not None:
            answer_error(protocol, data["id"], JsonRpcInternalError("see the server log"))
        return
    try:
        protocol.handle_message(message)
    except Exception:  # pygls answers requests itself; this is the last guard for the loop
        log.exception("handling a message failed")


def valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, int | str) and not isinstance(value, bool))


def envelope_problem(data: Any) -> str | None:
    """Why ``data`` is not a JSON-RPC 2.0 request, notification or response; None if it is."""
    if not isinstance(data, dict):
        return f"a message must be a JSON object, not {type(data).__name__}"
    if data.get("jsonrpc") != "2.0":
        return '"jsonrpc" must be "2.0"'
    if not valid_id(data.get("id")):
        return '"id" must be a number, a string or null'
    if "method" in data:
        if not isinstance(data["method"], str) or not data["method"]:
            return '"method" must be a non-empty string'
        params = data.get("params")
        if params is not None and not isinstance(params, dict | list):
            return '"params" must be an object or an array'
        return None
    if "id" not in data or ("result" not in data and "error" not in data):
        return 'a message needs a "method", or an "id" with a "result" or an "error"'
    return None


async def serve_frames(
    frames: FrameReader, protocol: JsonRPCProtocol, stop: threading.Event
) -> None:
    while not stop.is_set():
        body = await frames.next_body()
        if body is None:
            break
        dispatch(protocol, body)


def pollable(stream: BinaryIO) -> bool:
    """Whether the event loop can watch ``stream``: a pipe, socket or terminal, not on Windows."""
    if sys.platform == "win32":
        return False
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):  # no file descriptor (a test's in-memory stream)
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def _chunks_of(stdin: BinaryIO) -> ReadChunk:
    """A reader of ``stdin``'s next bytes: on the event loop if it can watch it, else a thread."""
    loop = asyncio.get_running_loop()
    if pollable(stdin):
        log.info("stdin read on the event loop")
        stream = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
        return lambda: stream.read(READ_CHUNK)
    log.info("stdin read in a thread (not a pipe, socket or terminal)")
    read = getattr(stdin, "read1", stdin.read)
    return lambda: loop.run_in_executor(None, read, READ_CHUNK)


class ClientWriter:
    """stdout for pygls that ends the session once the client has stopped reading.

    A client that closes its end of the pipe (an editor that crashed, a script that let go)
    turns every later message into a BrokenPipeError: pygls would log each one with its
    traceback, and the server would run on, talking to nobody, until stdin closed too.
    The first failed write is logged once and ``on_lost`` is called; later writes are dropped.
    """

    def __init__(self, stdout: BinaryIO, on_lost: Callable[[], None]) -> None:
        self._stdout = stdout
        self._on_lost = on_lost
        self._lock = threading.Lock()  # the model's threads write too
        self.lost = False

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stdout.close()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.lost:
                return
            try:
                self._stdout.write(data)
                self._stdout.flush()
            except (OSError, ValueError) as exc:  # ValueError: stdout already closed
                self.lost = True
                log.error("the client stopped reading (%s); shutting down", exc)
        if self.lost:
            self._on_lost()


def serve(server: JsonRPCServer, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve one client until it exits, the input ends or it stops reading; the exit code."""
    log.info("Starting stdio server")

    async def session(stop: threading.Event) -> None:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def end_session() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(task.cancel)

        server.protocol.set_writer(ClientWriter(stdout, end_session))
        frames = FrameReader(await _chunks_of(stdin))
        await serve_frames(frames, server.protocol, stop)

    return _run(server, session)


def serve_tcp(server: JsonRPCServer, host: str, port: int) -> int:
    """Serve clients on ``host:port`` (one session at a time, as pygls does), with the same
    framing as stdio; the process's exit code."""
    log.info("Starting TCP server on %s:%s", host, port)

    async def session(stop: threading.Event) -> None:
        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server.protocol.set_writer(writer)  # type: ignore[arg-type]
            await serve_frames(FrameReader(lambda: reader.read(READ_CHUNK)), server.protocol, stop)
            server.shutdown()

        server._server = await asyncio.start_server(connection, host, port)
        addresses = ", ".join(str(sock.getsockname()) for sock in server._server.sockets)
        log.info("Serving on %s", addresses)  # clients (and tests) wait for this line
        async with server._server:
            await server._server.serve_forever()

    return _run(server, session)


def _run(server: JsonRPCServer, session: Callable[[threading.Event], Awaitable[None]]) -> int:
    """Run ``session`` until the client exits; 1 after ``exit`` without ``shutdown`` (the LSP
    specification, as pygls decides it), else 0."""
    stop = threading.Event()
    server._stop_event = stop  # what pygls' shutdown sets to end the loop
    code = 0
    try:
        asyncio.run(session(stop))
    except BrokenPipeError:
        log.error("Connection to the client is lost! Shutting down the server.")
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except SystemExit as exit_request:  # pygls' `exit` handler
        code = exit_request.code if isinstance(exit_request.code, int) else 0
    finally:
        server.shutdown()
    return code
