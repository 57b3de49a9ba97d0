"""The stdio transport's reader (server/stdio.py): pygls' tolerance of bad input, kept."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from server.stdio import PipeReader, pollable


def reader_of(data: bytes, limit: int = 64) -> PipeReader:
    stream = asyncio.StreamReader(limit=limit)
    stream.feed_data(data)
    stream.feed_eof()
    return PipeReader(stream)


async def test_lines_and_bodies_read_as_pygls_reads_them() -> None:
    reader = reader_of(b"Content-Length: 2\r\n\r\n{}")
    assert await reader.readline() == b"Content-Length: 2\r\n"
    assert await reader.readline() == b"\r\n"
    assert await reader.readexactly(2) == b"{}"
    assert await reader.readline() == b""  # the end of input ends the session


async def test_an_over_long_line_is_dropped_and_the_next_message_survives() -> None:
    reader = reader_of(b"X-Junk: " + b"x" * 500 + b"\r\nContent-Length: 2\r\n\r\n{}")
    assert await reader.readline() == b"?\r\n"  # not a header: pygls skips it
    assert await reader.readline() == b"Content-Length: 2\r\n"
    assert await reader.readline() == b"\r\n"
    assert await reader.readexactly(2) == b"{}"


async def test_a_body_cut_short_by_the_end_of_input_ends_the_session() -> None:
    reader = reader_of(b'{"jsonrpc"')
    assert await reader.readexactly(100) == b""


def test_pipes_are_pollable_files_and_memory_are_not(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        assert pollable(pipe)
    (tmp_path / "input").write_bytes(b"")
    with (tmp_path / "input").open("rb") as regular:
        assert not pollable(regular)
    assert not pollable(io.BytesIO(b""))
